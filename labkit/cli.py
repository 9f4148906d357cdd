"""The ``labkit`` command (also ``python -m labkit``): labs from the shell.

Owns argument parsing and the text/JSON presentation of results; every action goes
through the public ``Lab`` API. Labs started with ``up`` are kept in ``labkit.store``
and rebuilt for each command; ``-f`` on a query command uses a throw-away lab instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from labkit import __version__, store
from labkit.errors import BackendUnavailable, LabkitError, ModelError
from labkit.lab import Lab, LabkitNotice
from labkit.runtime.base import default_owner


def _out(text: str) -> None:
    sys.stdout.write(text.rstrip("\n") + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text.rstrip("\n") + "\n")


def _labels(pairs: Sequence[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pair in pairs:
        if pair.endswith("-") and "=" not in pair:
            out[pair[:-1]] = None
        elif "=" in pair:
            key, value = pair.split("=", 1)
            out[key] = value
        else:
            raise ModelError(f"label {pair!r}: write key=value to set, key- to remove")
    return out


class _Using:
    """``with _Using(args) as lab``: a throw-away lab is closed afterwards, a stored one kept."""

    def __init__(self, args: argparse.Namespace):
        self.lab, self.stored = _open(args)

    def __enter__(self) -> Lab:
        return self.lab

    def __exit__(self, *exc: object) -> None:
        if self.stored:
            self.lab.detach()
        else:
            self.lab.close()


def _open(args: argparse.Namespace) -> tuple[Lab, bool]:
    """The lab a command works on: throw-away from ``-f`` files, else the stored one."""
    files = getattr(args, "file", None)
    if files:
        lab = Lab(args.lab, backend=args.backend, nodes=args.nodes)
        try:
            for f in files:
                lab.apply(f)
        except BaseException:
            lab.close()
            raise
        return lab, False
    state = store.load(args.lab)
    if state["backend"] == "sim":  # a simulated lab lives in no engine: rebuild it from its operations
        lab = Lab(args.lab, backend="sim", nodes=state["nodes"])
        lab.replay(state["history"])
        return lab, True
    return Lab.attach(args.lab, state["history"], backend=state["backend"], nodes=state["nodes"]), True


def _save(lab: Lab) -> None:
    store.save(lab.name, lab.backend_name, lab.cluster.node_count, lab.history)


def _keep(lab: Lab) -> None:
    """Save the lab's record and leave it running for the next command."""
    _save(lab)
    lab.detach()


def cmd_up(args: argparse.Namespace) -> int:
    if args.lab in store.names():
        raise ModelError(f"lab {args.lab!r} is already up: `labkit down --lab {args.lab}` first, or use apply")
    lab = Lab(args.lab, backend=args.backend, nodes=args.nodes)
    try:
        for f in args.file or []:
            _out(repr(lab.apply(f)))
    except BaseException:
        lab.close()
        raise
    _keep(lab)
    _out(f"lab {lab.name!r} is up on {lab.backend_name}" + (" (SIMULATED)" if lab.simulated else ""))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    lab, _ = _open(argparse.Namespace(**{**vars(args), "file": None}))
    try:
        for f in args.file:
            _out(repr(lab.apply(f)))
    finally:
        _keep(lab)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    lab, _ = _open(argparse.Namespace(**{**vars(args), "file": None}))
    try:
        _out(repr(lab.delete(args.kind, args.name, args.namespace)))
    finally:
        _keep(lab)
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    lab, _ = _open(argparse.Namespace(**{**vars(args), "file": None}))
    try:
        _out(repr(lab.label(args.kind, args.ref, _labels(args.labels))))
    finally:
        _keep(lab)
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    with _Using(args) as lab:
        m = lab.matrix(args.port, args.protocol, namespaces=args.namespace or None)
        _out(json.dumps(m.to_dict(), indent=2) if args.json else repr(m))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    with _Using(args) as lab:
        ex = lab.explain(args.src, args.dst, args.port, args.protocol)
        _out(json.dumps({"allowed": ex.allowed, "reasons": ex.reasons, "may_answer": ex.may_answer}, indent=2)
             if args.json else str(ex))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    with _Using(args) as lab:
        walk = lab.trace(args.src, args.dst, args.port, args.protocol)
        _out(json.dumps(walk.to_dict(), indent=2) if args.json else str(walk))
    return 0 if walk.agrees else 1  # the kernel did something else than the oracle says


def cmd_probe(args: argparse.Namespace) -> int:
    with _Using(args) as lab:
        result = lab.probe(args.src, args.dst, args.port, args.protocol, timeout=args.timeout)
        _out(json.dumps(asdict(result), indent=2) if args.json else repr(result))
    return 0 if result.ok else 1


def cmd_rules(args: argparse.Namespace) -> int:
    with _Using(args) as lab:
        _out(lab.rules())
    return 0


def _engine():
    """The docker backend when an engine answers, else None (labs then live only in the store)."""
    from labkit.runtime import registry  # noqa: PLC0415
    return registry.create("docker") if registry.engine_answers()[0] else None


def cmd_down(args: argparse.Namespace) -> int:
    owner = default_owner()
    targets = store.names() if args.all else [args.lab]
    backend = _engine()
    if backend is not None:  # the containers first: the record goes only once they have
        try:
            removed = backend.remove_labs(owner) if args.all else backend.remove_lab(args.lab, owner)
        finally:
            backend.close()
        if removed:
            _out(f"removed {removed} labelled container(s) of {owner}")
    for name in targets:
        _out(f"lab {name!r} removed" if store.remove(name) else f"lab {name!r} was not up")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def lab_state(info, recorded: set[str], local: bool = True) -> str:
    """Who keeps a lab alive: a running process, ``labkit up`` (recorded), or nobody (orphaned).
    Processes are only looked for when the engine is on this machine."""
    if not local:
        return "kept by labkit up" if info.name in recorded else "(engine elsewhere: its process cannot be seen)"
    pids = sorted({int(s.split("-", 1)[0]) for s in info.sessions if s.split("-", 1)[0].isdigit()})
    living = [p for p in pids if _alive(p)]
    if living:
        return f"process {', '.join(map(str, living))}"
    if info.name in recorded:
        return "kept by labkit up"
    return f"ORPHANED: process {', '.join(map(str, pids)) or '?'} ended (labkit down --lab {info.name})"


def _lab_rows(labs, recorded: set[str] = frozenset(), local: bool = True) -> list[str]:
    rows = [f"{'LAB':<20} {'OWNER':<16} {'BACKEND':<8} {'NODES':>5} {'PODS':>5} {'AGE':>5}  STATE"]
    rows += [f"{i.name:<20} {i.owner:<16} {i.backend:<8} {i.nodes:>5} {i.pods:>5} "
             f"{repr(i).rsplit('up ', 1)[-1][:-1]:>5}  {lab_state(i, recorded, local)}" for i in labs]
    return rows


def _known_labs(owner: str | None):
    """The labs on the engine (of ``owner``), and whether that engine is on this machine."""
    backend = _engine()
    if backend is None:
        return [], True
    try:
        return backend.list_labs(owner), backend.local
    finally:
        backend.close()


def cmd_list(args: argparse.Namespace) -> int:
    owner = default_owner()
    labs, local = _known_labs(owner)
    running = {i.name for i in labs}
    stored = [n for n in store.names() if n not in running]
    recorded = set(store.names())
    if args.json:
        _out(json.dumps({"labs": [i.to_dict() | {"state": lab_state(i, recorded, local)} for i in labs],
                         "recorded_only": stored}, indent=2))
        return 0
    _out("\n".join(_lab_rows(labs, recorded, local)))
    for name in stored:
        _out(f"{name:<20} (recorded in {store.state_dir()}; simulated, or its containers are gone)")
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    if args.admin_command == "list":
        labs, local = _known_labs(None)
        _out(json.dumps([i.to_dict() for i in labs], indent=2) if args.json else
             "\n".join(_lab_rows(labs, set(store.names()), local)))
        return 0
    if not args.yes:
        raise LabkitError("remove-every-lab removes the labs of EVERY owner on this engine: add --yes to confirm")
    backend = _engine()
    if backend is None:
        raise BackendUnavailable("no Docker engine answers: there are no labs to remove")
    try:
        _out(f"removed {backend.remove_every_lab()} labelled container(s) of every owner")
    finally:
        backend.close()
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from labkit.doctor import checks  # noqa: PLC0415 - only this command needs it
    results = checks()
    if args.json:
        _out(json.dumps([asdict(c) for c in results], indent=2))
    else:
        for c in results:
            _out(f"[{'ok' if c.ok else '--'}] {c.name}: {c.detail}")
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    from labkit.launch import copy_notebooks  # noqa: PLC0415
    copied, kept = copy_notebooks(Path(args.dest).expanduser(), force=args.force)
    for path in copied:
        _out(f"copied {path}")
    for path in kept:
        _out(f"kept {path} (yours; --force overwrites)")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    from labkit.launch import copy_notebooks, jupyter_lab, root_args  # noqa: PLC0415
    from labkit.runtime.registry import choose  # noqa: PLC0415
    dest = Path(args.dir).expanduser()
    copy_notebooks(dest)
    _err(f"notebooks in {dest}; {choose('auto')[1]}")
    extra = root_args(args.jupyter_args)
    if extra:
        _err("running as root: JupyterLab starts with --allow-root")
    jupyter_lab(dest, args.jupyter_args + extra)  # does not return: the process becomes JupyterLab
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from labkit.server.main import serve  # noqa: PLC0415
    return serve(args, _err)


def cmd_images(args: argparse.Namespace) -> int:
    from labkit.runtime import registry  # noqa: PLC0415
    if args.offline and args.base:
        raise LabkitError("--base names the Dockerfile's FROM image: it cannot go with --offline")
    backend = registry.create("docker")
    try:
        if not args.force:
            try:
                _out(f"{backend.image()} is up to date")
                return 0
            except BackendUnavailable as exc:
                _err(str(exc))
        offline = args.offline or (not args.dockerfile and not args.base and backend.can_build_offline())
        how = "offline: debootstrap + docker import" if offline else \
            f"from environments/image/Dockerfile, FROM {args.base or 'debian:bookworm-slim'}"
        _err(f"building {backend.image_tag()} ({how})")
        _out(backend.build_image(offline=offline, base=args.base).strip().splitlines()[-1])
    finally:
        backend.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labkit", description="Learn Kubernetes networking hands-on.")
    p.add_argument("--version", action="version", version=f"labkit {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lab", default="lab", help="lab name (default: lab)")
    common.add_argument("--backend", default="auto", choices=("auto", "docker", "sim", "remote"))
    common.add_argument("--nodes", type=int, default=1, help="number of nodes for a new lab")
    common.add_argument("--json", action="store_true", help="print data as JSON")
    files = argparse.ArgumentParser(add_help=False)
    files.add_argument("-f", "--file", action="append", help="manifest file or folder (repeatable)")
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--port", type=int, default=80)
    conn.add_argument("--protocol", default="TCP", type=str.upper, choices=("TCP", "UDP", "SCTP"))
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, func, help_, parents=()):
        sp = sub.add_parser(name, help=help_, parents=[common, *parents])
        sp.set_defaults(func=func)
        return sp

    add("up", cmd_up, "start a lab and apply manifests", [files])
    sp = add("apply", cmd_apply, "apply manifests to the running lab")
    sp.add_argument("-f", "--file", action="append", required=True)
    sp = add("delete", cmd_delete, "delete an object: labkit delete netpol deny-all -n x")
    sp.add_argument("kind")
    sp.add_argument("name")
    sp.add_argument("-n", "--namespace", default="default")
    sp = add("label", cmd_label, "label a pod or namespace: labkit label pod x/a role=db tier-")
    sp.add_argument("kind", choices=("pod", "namespace", "ns"))
    sp.add_argument("ref")
    sp.add_argument("labels", nargs="+")
    sp = add("matrix", cmd_matrix, "reachability matrix of every pod pair", [files, conn])
    sp.add_argument("--namespace", action="append", help="only pods of this namespace (repeatable)")
    for name, func, help_ in (("explain", cmd_explain, "why SRC can or cannot reach DST"),
                              ("probe", cmd_probe, "connect from SRC to DST once"),
                              ("trace", cmd_trace, "one connection from SRC to DST, hop by hop through the kernel's "
                                                   "rules")):
        sp = add(name, func, help_, [files, conn])
        sp.add_argument("src")
        sp.add_argument("dst")
        if name == "probe":
            sp.add_argument("--timeout", type=float, default=1.0)
    add("rules", cmd_rules, "the nftables rules in force", [files])
    sp = add("down", cmd_down, "remove a lab of yours (--all: every lab of yours)")
    sp.add_argument("--all", action="store_true", help="every lab you own (never another owner's)")
    add("list", cmd_list, "your labs: running on the engine, or recorded")
    admin = sub.add_parser("admin", help="engine-wide commands for whoever runs the engine")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    sp = admin_sub.add_parser("list", help="every lab on the engine, of every owner")
    sp.add_argument("--json", action="store_true")
    sp = admin_sub.add_parser("remove-every-lab", help="remove the labs of EVERY owner on the engine")
    sp.add_argument("--yes", action="store_true", help="confirm")
    admin.set_defaults(func=cmd_admin)
    add("doctor", cmd_doctor, "what this machine offers labkit")
    sp = sub.add_parser("serve", help="the lab server: runs every user's labs on one engine (a classroom)")
    sp.add_argument("--socket", help="unix socket to listen on (one machine), e.g. /run/labkit/server.sock")
    sp.add_argument("--listen", metavar="HOST:PORT", help="TCP address to listen on (a cluster; needs --hub)")
    sp.add_argument("--hub", action="store_true", help="callers are known by their JupyterHub token (uses "
                    "JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN); on the socket their Unix user must match")
    sp.add_argument("--hub-service", default=None, help="the hub service name tokens must be allowed to access "
                    "(default: $JUPYTERHUB_SERVICE_NAME, else labkit)")
    sp.add_argument("--hub-poll-seconds", type=float, default=30.0,
                    help="how often to ask the hub whose servers stopped (their labs are removed)")
    sp.add_argument("--name", default="labkit", help="this server's name on the engine's containers: a restart "
                    "removes the labs an earlier run of the same name left (default: labkit)")
    sp.add_argument("--labs-per-owner", type=int, default=3)
    sp.add_argument("--pods-per-lab", type=int, default=40)
    sp.add_argument("--memory-per-pod", default="256M", help="memory each pod may use (default 256M; 0: no limit)")
    sp.add_argument("--pids-per-pod", type=int, default=128, help="processes each pod may run (default 128)")
    sp.add_argument("--cpus-per-pod", type=float, default=0.5,
                    help="CPU time each pod may use, in cores (default 0.5; 0: no limit)")
    sp.add_argument("--nodes-per-lab", type=int, default=3, help="the most nodes a lab may have (default 3)")
    sp.add_argument("--memory-per-learner", default="4G",
                    help="memory all of one learner's pods may hold together (default 4G)")
    sp.add_argument("--idle-lab-minutes", type=float, default=120.0,
                    help="a lab nobody used for this long is removed (default 120; 0: never)")
    sp.add_argument("--allow-image", action="append", default=[], help="an image manifests may name (repeatable)")
    sp.set_defaults(func=cmd_serve)
    images = sub.add_parser("images", help="the lab image").add_subparsers(dest="images_command", required=True)
    sp = images.add_parser("build", help="build the lab image into the Docker engine (when missing or stale)")
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--offline", action="store_true",
                     help="build without a registry (debootstrap from the apt mirror, then docker import)")
    how.add_argument("--dockerfile", action="store_true", help="docker build FROM debian:bookworm-slim")
    sp.add_argument("--base", metavar="IMAGE",
                    help="with the Dockerfile: FROM this image (a mirror of debian:bookworm-slim)")
    sp.add_argument("--force", action="store_true", help="build even when the image is up to date")
    sp.set_defaults(func=cmd_images)
    sp = sub.add_parser("notebooks", help="copy the course notebooks to DEST (never overwrites)")
    sp.add_argument("dest")
    sp.add_argument("--force", action="store_true", help="overwrite notebooks already in DEST")
    sp.set_defaults(func=cmd_notebooks)
    sp = sub.add_parser("lab", help="open JupyterLab on a working copy of the notebooks",
                        usage="labkit lab [--dir DIR] [jupyter lab options, e.g. --port 8899 --no-browser]")
    sp.add_argument("--dir", default=os.environ.get("LABKIT_NOTEBOOKS", "~/labkit-notebooks"))
    # No positional here: every other argument goes on to jupyter lab unchanged and in order
    # (a positional would swallow the value of `--port 8899` and reorder the rest).
    sp.set_defaults(func=cmd_lab, jupyter_args=[])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "lab":  # everything labkit does not know goes on to jupyter lab
        args.jupyter_args = [a for a in extra if a != "--"]
    with warnings.catch_warnings():
        warnings.simplefilter("always", LabkitNotice)
        shown = warnings.showwarning
        warnings.showwarning = lambda message, category, *rest, **kw: (
            _err(f"notice: {message}") if issubclass(category, LabkitNotice) else shown(message, category, *rest, **kw))
        try:
            return args.func(args)
        except LabkitError as exc:
            _err(f"error: {exc}")
            return 1
        except KeyboardInterrupt:
            _err("interrupted")
            return 130
        finally:
            warnings.showwarning = shown
