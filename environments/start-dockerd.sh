#!/usr/bin/env bash
# Start a Docker engine for labkit's docker backend, if none answers yet.
#
# Idempotent: when `docker info` already answers, exit 0 at once. Otherwise (Linux, root
# only) install Debian's docker.io if `dockerd` is missing and start dockerd in the
# background with every host-network feature switched off:
#
#   --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false
#
# so the engine never creates docker0, never writes host firewall rules and never changes
# host sysctls or routes. labkit only runs containers with `--network none` anyway.
#
# Environment (all optional):
#   LABKIT_DOCKERD_LOG       log file            (default /var/log/labkit-dockerd.log)
#   LABKIT_DOCKERD_PIDFILE   pid of the dockerd this script started
#                                                (default /var/run/labkit-dockerd.pid)
#   LABKIT_DOCKERD_TIMEOUT   seconds to wait for `docker info` (default 90)
#   LABKIT_DOCKERD_NO_INSTALL=1  never apt-get install; fail if dockerd is missing
#
# Only processes whose PID this script recorded in its pidfile are ever stopped.
set -euo pipefail

LOG=${LABKIT_DOCKERD_LOG:-/var/log/labkit-dockerd.log}
PIDFILE=${LABKIT_DOCKERD_PIDFILE:-/var/run/labkit-dockerd.pid}
TIMEOUT=${LABKIT_DOCKERD_TIMEOUT:-90}
SOCK=/var/run/docker.sock
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { printf 'start-dockerd: %s\n' "$*" >&2; }
die() { printf 'start-dockerd: ERROR: %s\n' "$*" >&2; exit 1; }

docker_answers() {
    command -v docker >/dev/null 2>&1 || return 1
    timeout 8 docker info >/dev/null 2>&1
}

# PID recorded in our pidfile, if that process is still alive and is a dockerd.
our_dockerd_pid() {
    local pid exe
    [[ -r $PIDFILE ]] || return 1
    pid=$(tr -dc '0-9' <"$PIDFILE")
    [[ -n $pid ]] || return 1
    [[ -d /proc/$pid ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    [[ ${exe##*/} == dockerd* ]] || return 1
    printf '%s\n' "$pid"
}

# Any dockerd process at all (for a diagnostic only: never used to stop anything).
any_dockerd_pids() {
    local d exe
    for d in /proc/[0-9]*; do
        exe=$(readlink "$d/exe" 2>/dev/null || true)
        [[ ${exe##*/} == dockerd ]] && printf '%s ' "${d#/proc/}"
    done
    return 0
}

stop_our_dockerd() {
    local pid=$1
    say "stopping the dockerd this script started (pid $pid)"
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 40); do
        [[ -d /proc/$pid ]] || { rm -f "$PIDFILE"; return 0; }
        sleep 0.5
    done
    say "pid $pid did not stop after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
}

wait_for_docker() {
    local pid=$1 deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        if docker_answers; then return 0; fi
        if [[ -n $pid && ! -d /proc/$pid ]]; then
            return 2
        fi
        sleep 0.5
    done
    return 1
}

show_log_tail() {
    [[ -r $LOG ]] || return 0
    say "last lines of $LOG (grpc chatter left out):"
    grep -v -e '\[core\]' -e 'loading plugin' "$LOG" | tail -n 25 >&2 || true
}

# ---------------------------------------------------------------------------------------
# 1. Already answering? Done.
if docker_answers; then
    say "a Docker engine already answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')); nothing to do"
    exit 0
fi

if [[ -n ${DOCKER_HOST:-} && ${DOCKER_HOST} != "unix://$SOCK" ]]; then
    die "DOCKER_HOST=$DOCKER_HOST does not answer; this script only starts a local engine (unset DOCKER_HOST to use one)"
fi
[[ $(uname -s) == Linux ]] || die "no Docker engine answers; start Docker Desktop (or your engine) yourself"
[[ $(id -u) == 0 ]] || die "no Docker engine answers and starting one needs root (run: sudo $0)"
command -v docker >/dev/null 2>&1 || say "note: no docker CLI on PATH; it comes with the docker.io package"

# 2. A dockerd we started earlier that is still starting (or hung)?
if pid=$(our_dockerd_pid); then
    say "dockerd started earlier by this script (pid $pid) does not answer yet; waiting up to ${TIMEOUT}s"
    if wait_for_docker "$pid"; then
        say "Docker engine is up (pid $pid)"
        exit 0
    fi
    show_log_tail
    stop_our_dockerd "$pid"
    say "starting a fresh dockerd"
fi

# A dockerd that is not ours and does not answer: leave it alone.
others=$(any_dockerd_pids)
if [[ -n $others ]]; then
    die "a dockerd not started by this script is running (pid ${others% }) but 'docker info' gets no answer; not touching it. Check its socket ($SOCK) and logs, or stop it yourself."
fi

# 3. Install the engine when dockerd is missing.
if ! command -v dockerd >/dev/null 2>&1; then
    [[ ${LABKIT_DOCKERD_NO_INSTALL:-0} == 1 ]] && die "dockerd is not installed (LABKIT_DOCKERD_NO_INSTALL=1)"
    command -v apt-get >/dev/null 2>&1 || die "dockerd is not installed and there is no apt-get to install it; install a Docker engine yourself"
    say "dockerd not found: installing Debian's docker.io (with containerd, runc)"
    # Keep the package's init scripts from starting a dockerd with default flags (which
    # would create docker0, write iptables rules and turn on the host's ip_forward).
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, written by labkit start-dockerd.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
        trap '[[ $made_policy == 1 ]] && rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends docker.io containerd runc >/dev/null \
        || die "apt-get install docker.io failed"
    if [[ $made_policy == 1 ]]; then rm -f "$policy"; made_policy=0; fi
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is still not on PATH"
fi
for bin in containerd runc; do
    command -v "$bin" >/dev/null 2>&1 || die "$bin is missing (it should come with docker.io): apt-get install $bin"
done

# 4. Start dockerd with host networking features off. Only pass flags this dockerd knows.
help=$(dockerd --help 2>&1 || true)
flags=(--bridge=none --iptables=false --ip-forward=false)
for f in ip6tables ip-masq; do
    if grep -q -- "--$f" <<<"$help"; then flags+=("--$f=false"); fi
done
for f in "${flags[@]}"; do
    grep -q -- "${f%%=*}" <<<"$help" || die "this dockerd does not accept ${f%%=*}; refusing to start it with defaults"
done

# A stale socket from a dead daemon would make dockerd fail to listen.
if [[ -S $SOCK ]] && ! docker_answers; then
    say "removing stale socket $SOCK (no daemon answers on it)"
    rm -f "$SOCK"
fi

mkdir -p "$(dirname "$LOG")" "$(dirname "$PIDFILE")"
say "starting: dockerd ${flags[*]} (log: $LOG)"
{
    printf '\n===== %s start-dockerd.sh: dockerd %s\n' "$(date -Is)" "${flags[*]}"
} >>"$LOG"
# setsid: the daemon does not belong to the caller's process group or terminal.
setsid dockerd "${flags[@]}" </dev/null >>"$LOG" 2>&1 &
pid=$!
printf '%s\n' "$pid" >"$PIDFILE"
say "dockerd pid $pid (pidfile $PIDFILE); waiting up to ${TIMEOUT}s for 'docker info'"

start=$SECONDS
if wait_for_docker "$pid"; then
    say "Docker engine is up after $((SECONDS - start))s: server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')"
    exit 0
else
    rc=$?
fi
show_log_tail
if [[ $rc == 2 ]]; then
    rm -f "$PIDFILE"
    die "dockerd (pid $pid) exited before answering; see $LOG"
fi
stop_our_dockerd "$pid"
die "dockerd did not answer 'docker info' within ${TIMEOUT}s; see $LOG"
