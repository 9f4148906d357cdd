"""Command line of the node agent: ``python3 -m labkit.node <command>``.

Data commands (probe, cni, nft, nft-list, sysctl, exec-in, info) read one JSON object on
stdin and write one JSON object (one line) on stdout; any failure exits with code 2 and
``{"error": "..."}`` on stdout. ``serve`` takes argv and runs until SIGTERM.
"""

import json
import sys

from .errors import NodeError

USAGE = ("usage: python3 -m labkit.node {serve,connect,capture,nft-watch,probe,cni,nft,nft-list,sysctl,exec-in,info}"
         " (JSON object on stdin, JSON object on stdout)")


def _info(request):
    import os
    import shutil
    import socket
    from . import __version__
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM,
                      getattr(socket, "IPPROTO_SCTP", 132)).close()
        sctp = True
    except OSError:
        sctp = False
    tools = {t: shutil.which(t) for t in ("nft", "ip", "nsenter", "conntrack")}
    return {"version": __version__, "python": sys.version.split()[0], "sctp": sctp,
            "tools": tools, "cni_path": os.environ.get("CNI_PATH") or "/usr/lib/cni:/opt/cni/bin"}


def _handlers():
    from . import cni, execin, nft, probe, sysctl
    return {"probe": probe.handle, "cni": cni.handle, "nft": nft.apply,
            "nft-list": nft.list_tables, "sysctl": sysctl.handle, "exec-in": execin.handle,
            "info": _info}


def _emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")
    sys.stdout.flush()


def read_request(stream):
    text = stream.read()
    if not text.strip():
        return {}
    try:
        request = json.loads(text)
    except ValueError as exc:
        raise NodeError("invalid JSON on stdin: %s" % exc) from exc
    if not isinstance(request, dict):
        raise NodeError("stdin must hold one JSON object, got %s" % type(request).__name__)
    return request


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv:
            raise NodeError(USAGE)
        command, rest = argv[0], argv[1:]
        if command == "connect":
            from . import connect
            return connect.main()
        if command == "capture":
            from . import capture
            return capture.main()
        if command == "nft-watch":
            from . import nftwatch
            return nftwatch.main()
        if command == "serve":
            from . import serve
            try:
                return serve.main(rest)
            except ValueError as exc:
                raise NodeError(str(exc)) from exc
        handlers = _handlers()
        if command not in handlers:
            raise NodeError("unknown command %r; %s" % (command, USAGE))
        if rest:
            raise NodeError("%s takes no arguments (JSON on stdin)" % command)
        _emit(handlers[command](read_request(sys.stdin)))
        return 0
    except NodeError as exc:
        _emit(exc.to_json())
        return 2
    except Exception as exc:  # never a traceback instead of JSON
        _emit({"error": "internal error: %s: %s" % (type(exc).__name__, exc)})
        return 2


if __name__ == "__main__":
    sys.exit(main())
