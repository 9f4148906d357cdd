#!/usr/bin/env bash
# Build the labkit lab image without any container registry:
#
#   build-offline.sh TAG LABKIT_PKG_DIR        e.g.  build-offline.sh labkit/lab:0.1.0 ./labkit
#   build-offline.sh --slim-base TAG           a stand-in for debian:bookworm-slim (minbase,
#                                              trimmed, no extra package) to test the Dockerfile
#                                              where no registry is reachable
#
# 1. Root filesystem: `debootstrap --variant=minbase --include=<packages.txt> bookworm`
#    from the apt mirror this machine is configured with (discovered at run time from
#    /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}; override with
#    LABKIT_APT_MIRROR=<url>), trimmed like debian:bookworm-slim, and cached as a tarball
#    under ${LABKIT_CACHE_DIR:-~/.cache/labkit} keyed by suite, arch and package list.
# 2. Image: the cached tarball + /opt/labkit/labkit/{__init__.py (empty), node/} from
#    LABKIT_PKG_DIR (one tar, the overlay appended), `docker import`ed with PYTHONPATH=/opt/labkit and labels:
#      io.labkit.version       the tag's version part (after the last ':')
#      io.labkit.node-sha256   hash of LABKIT_PKG_DIR/node (algorithm below)
#      io.labkit.base          cache key of the root filesystem
#      io.labkit.content-hash  hash of base tarball + node code + recipe
#    If TAG already exists with the same io.labkit.content-hash, nothing is rebuilt
#    (LABKIT_FORCE=1 rebuilds anyway).
#
# node-sha256: for every regular file under node/ (skipping __pycache__ dirs and *.pyc),
# sorted by its path relative to node/ (byte order), the line "<sha256 hex>  <relpath>\n";
# the sha256 hex of the concatenated lines. (Python: sorted relpaths, same lines, hashlib.)
#
# Needs: Linux, root, a Docker engine that answers (see environments/start-dockerd.sh),
# apt (debootstrap is installed when missing). Never touches the host's network config.
# Times on the 2-core reference machine: cold (debootstrap) 50-60 s (+5 s to install
# debootstrap); cached root filesystem 2-3 s; unchanged content (tag up to date) < 0.1 s.
# Image size ~196 MB. Other knobs: LABKIT_SUITE (bookworm), LABKIT_REBUILD_BASE=1.
set -euo pipefail

RECIPE=2            # bump when the rootfs recipe below changes (invalidates the cache)
SUITE=${LABKIT_SUITE:-bookworm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PKGFILE=$HERE/packages.txt
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C

say() { printf 'build-offline: %s\n' "$*" >&2; }
die() { printf 'build-offline: ERROR: %s\n' "$*" >&2; exit 1; }
t0=$SECONDS
elapsed() { printf '%ss' "$((SECONDS - t0))"; }

usage() { sed -n '2,7p' "$0" >&2; exit 2; }
SLIM=0
if [[ ${1:-} == --slim-base ]]; then
    SLIM=1; shift
    [[ $# == 1 && -n $1 ]] || usage
    TAG=$1
else
    [[ $# == 2 ]] || usage
    TAG=$1
    PKG_DIR=$2
    [[ -n $TAG ]] || usage
    [[ -d $PKG_DIR/node ]] || die "$PKG_DIR/node is not a directory (LABKIT_PKG_DIR must be the 'labkit' package dir)"
    PKG_DIR=$(cd "$PKG_DIR" && pwd)
fi
name_part=${TAG##*/}
if [[ $name_part == *:* ]]; then VERSION=${name_part##*:}; else VERSION=latest; TAG=$TAG:latest; fi

[[ $(uname -s) == Linux ]] || die "the offline build needs Linux (debootstrap); use the Dockerfile elsewhere"
[[ $(id -u) == 0 ]] || die "the offline build needs root (debootstrap): sudo $0 $*"
command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH"
timeout 20 docker info >/dev/null 2>&1 || die "no Docker engine answers; run environments/start-dockerd.sh first"
[[ -r $PKGFILE ]] || die "missing $PKGFILE"

ARCH=$(dpkg --print-architecture 2>/dev/null || true)
if [[ -z $ARCH ]]; then
    case $(uname -m) in x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; *) die "unknown architecture $(uname -m)" ;; esac
fi

if ((SLIM)); then
    PACKAGES=()
else
    mapfile -t PACKAGES < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PKGFILE" | grep -v '^$' | sort -u)
    ((${#PACKAGES[@]} > 0)) || die "no packages in $PKGFILE"
fi
INCLUDE=$(IFS=,; echo "${PACKAGES[*]}")

CACHE=${LABKIT_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/labkit}
mkdir -p "$CACHE"
KEY=$(printf 'recipe=%s\nsuite=%s\narch=%s\nvariant=minbase\npackages=%s\n' \
    "$RECIPE" "$SUITE" "$ARCH" "$INCLUDE" | sha256sum | cut -c1-16)
if ((SLIM)); then BASE=$CACHE/slim-$SUITE-$ARCH-$KEY.tar; else BASE=$CACHE/rootfs-$SUITE-$ARCH-$KEY.tar; fi
BASE_SUM=$BASE.sha256

# One build at a time per cache directory.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.lock"
    flock -w 1800 9 || die "could not lock $CACHE/.lock (another build running?)"
fi

# ---------------------------------------------------------------------------------------
# Helpers for the root filesystem.

WORK=""
ROOTFS=""
unmount_under() {        # unmount everything mounted at or below $1 (deepest first)
    local dir=$1 m
    [[ -n $dir && -d $dir ]] || return 0
    dir=$(cd "$dir" && pwd -P)
    while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "warning: could not unmount $m"
    done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r)
}
cleanup() {
    if [[ -n $ROOTFS ]]; then unmount_under "$ROOTFS"; fi
    if [[ -n $WORK && -d $WORK ]]; then
        # --one-file-system: never descend into anything still mounted (e.g. a bind of /dev)
        rm -rf --one-file-system "$WORK" 2>/dev/null || say "warning: could not remove $WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Entries "uri<TAB>suites<TAB>signed-by<TAB>trusted" from apt's sources, in file order.
apt_source_entries() {
    local f
    shopt -s nullglob
    local etc=${LABKIT_APT_ETC:-/etc/apt}
    for f in "$etc/sources.list" "$etc"/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        awk '
          /^[[:space:]]*#/ {next}
          $1 == "deb" {
            opts=""; i=2
            if ($2 ~ /^\[/) { while (i <= NF) { opts = opts " " $i; if ($i ~ /\]$/) {i++; break}; i++ } }
            uri=$i; suite=$(i+1)
            sb=""; tr="no"
            if (match(opts, /signed-by=[^] ]+/)) sb=substr(opts, RSTART+10, RLENGTH-10)
            if (opts ~ /trusted=yes/) tr="yes"
            print uri "\t" suite "\t" sb "\t" tr
          }' "$f"
    done
    for f in "$etc"/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        awk '
          function flush() {
            if (types ~ /(^|[[:space:]])deb($|[[:space:]])/ && tolower(enabled) != "no" && uris != "") {
              n = split(uris, u, /[[:space:]]+/)
              for (k = 1; k <= n; k++) if (u[k] != "") print u[k] "\t" suites "\t" sb "\t" tr
            }
            types=""; uris=""; suites=""; sb=""; tr="no"; enabled="yes"
          }
          BEGIN { tr="no"; enabled="yes" }
          /^[[:space:]]*#/ {next}
          /^[[:space:]]*$/ {flush(); next}
          /^[[:space:]]/ {next}
          {
            key=tolower($1); sub(/:$/, "", key); val=$0; sub(/^[^:]*:[[:space:]]*/, "", val)
            if (key == "types") types=val
            else if (key == "uris") uris=val
            else if (key == "suites") suites=val
            else if (key == "signed-by") sb=val
            else if (key == "trusted") tr=tolower(val)
            else if (key == "enabled") enabled=val
          }
          END {flush()}' "$f"
    done
    shopt -u nullglob
}

url_ok() {
    if command -v wget >/dev/null 2>&1; then
        wget -q --spider --timeout=15 --tries=1 "$1"
    elif command -v curl >/dev/null 2>&1; then
        curl -fsSIL --max-time 15 -o /dev/null "$1"
    else
        return 0
    fi
}

# Sets MIRROR, MIRROR_KEYRING, MIRROR_TRUSTED.
discover_mirror() {
    MIRROR_KEYRING=""
    MIRROR_TRUSTED=no
    if [[ -n ${LABKIT_APT_MIRROR:-} ]]; then
        MIRROR=$LABKIT_APT_MIRROR
        return 0
    fi
    local uri suites sb tr exact=() other=() line s
    while IFS=$'\t' read -r uri suites sb tr; do
        [[ $uri == http://* || $uri == https://* || $uri == file:/* ]] || continue
        line="$uri"$'\t'"$sb"$'\t'"$tr"
        local is_exact=0 is_security=1
        for s in $suites; do
            [[ $s == "$SUITE" ]] && is_exact=1
            [[ $s == *-security || $s == */updates ]] || is_security=0
        done
        ((is_security)) && continue
        if ((is_exact)); then exact+=("$line"); else other+=("$line"); fi
    done < <(apt_source_entries)
    local cand
    for cand in "${exact[@]}" "${other[@]}"; do
        IFS=$'\t' read -r uri sb tr <<<"$cand"
        uri=${uri%/}
        if url_ok "$uri/dists/$SUITE/InRelease" || url_ok "$uri/dists/$SUITE/Release"; then
            MIRROR=$uri
            [[ $sb == /* && -r $sb ]] && MIRROR_KEYRING=$sb
            MIRROR_TRUSTED=$tr
            return 0
        fi
        say "mirror candidate $uri has no dists/$SUITE; skipping"
    done
    die "no configured apt source serves '$SUITE' (looked in /etc/apt/sources.list{,.d}); set LABKIT_APT_MIRROR=<url>"
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing and there is no apt-get to install it"
    say "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends debootstrap debian-archive-keyring gpgv wget >/dev/null \
        || die "apt-get install debootstrap failed"
}

# Trim the root filesystem the way debian:bookworm-slim is trimmed, and make it fit for a
# container image (no host identity, no caches).
trim_rootfs() {
    local r=$1
    mkdir -p "$r/etc/dpkg/dpkg.cfg.d"
    cat >"$r/etc/dpkg/dpkg.cfg.d/labkit-slim" <<'EOF'
# labkit lab image: keep images small (as debian:*-slim does)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    # apply the same exclusions to what is installed already
    find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$r"/usr/share/man/* "$r"/usr/share/groff/* "$r"/usr/share/info/* \
           "$r"/usr/share/lintian/* "$r"/usr/share/linda/*
    find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    # caches, logs, host identity (docker mounts its own resolv.conf, hosts, hostname)
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
           "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old "$r"/var/log/* \
           "$r"/tmp/* "$r"/var/tmp/* "$r"/root/.bash_history
    mkdir -p "$r/var/lib/apt/lists/partial" "$r/var/cache/apt/archives/partial"
    : >"$r/etc/resolv.conf"
    : >"$r/etc/hostname"
    [[ -e $r/etc/machine-id ]] && : >"$r/etc/machine-id"
    # services never start inside the image on apt-get install
    printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 755 "$r/usr/sbin/policy-rc.d"
    find "$r/usr/lib/python3" -name '__pycache__' -type d -prune -exec rm -rf {} + 2>/dev/null || true
    # CNI plugins: keep only those a lab uses (the rest are ~30 MB of Go binaries)
    local f
    for f in "$r"/usr/lib/cni/*; do
        case ${f##*/} in bridge|host-local|static|loopback|portmap|tuning|ptp) ;; *) rm -f "$f" ;; esac
    done
    mkdir -p "$r/opt"
}

build_base() {
    ensure_debootstrap
    discover_mirror
    if [[ -z ${http_proxy:-} ]]; then
        local p
        p=$(apt-config dump 2>/dev/null | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p' | head -n1)
        if [[ -n $p && $p != DIRECT ]]; then export http_proxy=$p; fi
    fi
    local args=(--variant=minbase --arch="$ARCH" --components=main)
    [[ -n $INCLUDE ]] && args+=(--include="$INCLUDE")
    [[ -n $MIRROR_KEYRING ]] && args+=(--keyring="$MIRROR_KEYRING")
    [[ $MIRROR_TRUSTED == yes ]] && args+=(--no-check-gpg)
    WORK=$(mktemp -d "$CACHE/work.XXXXXX")
    ROOTFS=$WORK/rootfs
    mkdir -p "$ROOTFS"
    local log=$CACHE/debootstrap-$KEY.log
    say "debootstrap $SUITE ($ARCH, minbase, ${#PACKAGES[@]} extra packages) from $MIRROR (log: $log)"
    if ! debootstrap "${args[@]}" "$SUITE" "$ROOTFS" "$MIRROR" >"$log" 2>&1; then
        tail -n 30 "$log" >&2 || true
        [[ -r $ROOTFS/debootstrap/debootstrap.log ]] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
        die "debootstrap failed; see $log"
    fi
    unmount_under "$ROOTFS"   # debootstrap unmounts proc/sys itself; be sure
    say "debootstrap done at $(elapsed); trimming"
    trim_rootfs "$ROOTFS"
    # sanity: the tools labkit relies on are there
    local b
    ((SLIM)) || for b in usr/bin/python3 usr/sbin/nft usr/sbin/ip usr/sbin/conntrack usr/lib/cni/bridge \
             usr/lib/cni/host-local usr/lib/cni/static usr/sbin/dnsmasq usr/bin/tcpdump; do
        [[ -e $ROOTFS/$b || -L $ROOTFS/$b ]] || die "rootfs lacks /$b"
    done
    tar --numeric-owner --xattrs --xattrs-include='security.capability' \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' \
        -C "$ROOTFS" -cf "$BASE.partial" .
    sha256sum "$BASE.partial" | cut -d' ' -f1 >"$BASE_SUM.partial"
    mv -f "$BASE_SUM.partial" "$BASE_SUM"
    mv -f "$BASE.partial" "$BASE"
    cleanup; WORK=""; ROOTFS=""
    # drop root filesystems cached under older keys (stale package list or recipe)
    local old
    ((SLIM)) || for old in "$CACHE"/rootfs-*.tar; do
        [[ $old == "$BASE" || ! -e $old ]] && continue
        say "removing stale cache $(basename "$old")"
        rm -f "$old" "$old.sha256" "$CACHE/debootstrap-$(basename "$old" .tar | sed 's/.*-//').log"
    done
    say "cached root filesystem $BASE ($(du -h "$BASE" | cut -f1)) at $(elapsed)"
}

node_sha256() {
    (cd "$PKG_DIR/node" &&
        find . \( -name __pycache__ -prune \) -o \( -type f ! -name '*.pyc' -print \) |
        sed 's|^\./||' | sort |
        while IFS= read -r f; do printf '%s  %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"; done) |
        sha256sum | cut -d' ' -f1
}

# ---------------------------------------------------------------------------------------
if [[ ${LABKIT_REBUILD_BASE:-0} == 1 ]]; then rm -f "$BASE" "$BASE_SUM"; fi
if [[ -s $BASE && -s $BASE_SUM ]]; then
    say "using cached root filesystem $BASE"
else
    rm -f "$BASE" "$BASE_SUM"
    build_base
fi

if ((SLIM)); then
    docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$BASE" "$TAG" >/dev/null || die "docker import of $BASE failed"
    say "built $TAG (slim base, $(du -h "$BASE" | cut -f1)) in $(elapsed)"
    exit 0
fi

BASE_HASH=$(cat "$BASE_SUM")
NODE_HASH=$(node_sha256)
CONTENT_HASH=$(printf 'recipe=%s\nbase=%s\nnode=%s\n' "$RECIPE" "$BASE_HASH" "$NODE_HASH" | sha256sum | cut -d' ' -f1)

existing=$(docker image inspect --format '{{ index .Config.Labels "io.labkit.content-hash" }}' "$TAG" 2>/dev/null || true)
if [[ $existing == "$CONTENT_HASH" && ${LABKIT_FORCE:-0} != 1 ]]; then
    say "$TAG is up to date (content-hash ${CONTENT_HASH:0:12}); nothing to do ($(elapsed))"
    exit 0
fi

WORK=$(mktemp -d "$CACHE/work.XXXXXX")
ov=$WORK/overlay
mkdir -p "$ov/opt/labkit/labkit"
: >"$ov/opt/labkit/labkit/__init__.py"
tar -C "$PKG_DIR" --exclude=__pycache__ --exclude='*.pyc' -cf - node | tar -C "$ov/opt/labkit/labkit" -xf -
printf '%s\n' "$VERSION" >"$ov/opt/labkit/VERSION"
chmod -R u=rwX,go=rX "$ov/opt"
cp "$BASE" "$WORK/image.tar"
tar --numeric-owner --owner=0 --group=0 -C "$ov" -rf "$WORK/image.tar" ./opt/labkit

old_id=$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
say "docker import -> $TAG"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONPATH=/opt/labkit' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change 'WORKDIR /' \
    --change 'CMD ["sleep","infinity"]' \
    --change "LABEL io.labkit.version=$VERSION" \
    --change "LABEL io.labkit.node-sha256=$NODE_HASH" \
    --change "LABEL io.labkit.base=$SUITE-$ARCH-$KEY" \
    --change "LABEL io.labkit.content-hash=$CONTENT_HASH" \
    --message "labkit lab image $VERSION (offline build)" \
    "$WORK/image.tar" "$TAG" >/dev/null
new_id=$(docker image inspect --format '{{.Id}}' "$TAG")
# the image this tag pointed to before: remove it if nothing else refers to it (no tag, no
# container); it is one of ours (it carried io.labkit.content-hash)
if [[ -n $old_id && $old_id != "$new_id" && -n $existing ]]; then
    if [[ $(docker image inspect --format '{{len .RepoTags}}' "$old_id" 2>/dev/null) == 0 ]]; then
        docker image rm "$old_id" >/dev/null 2>&1 && say "removed the previous, now untagged image ${old_id:7:12}" || true
    fi
fi
say "built $TAG ($(docker image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}')) in $(elapsed)"
