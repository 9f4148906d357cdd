"""labkit's in-image node agent (stdlib only).

This package runs INSIDE the lab image (Debian bookworm, python3.11) and is copied there
alone as ``labkit/node/``: it must never import anything else from ``labkit`` nor any
third-party module. The host side drives it with ``docker exec ... python3 -m labkit.node
<command>``: one JSON object on stdin, one JSON object on stdout, exit code 2 and
``{"error": ...}`` on failure (see ``__main__``).

Modules: ``serve`` (the default pod app), ``probe`` + ``dnsclient`` (parallel probes from
inside pod namespaces), ``cni`` (runs the real CNI plugins), ``nft`` (atomic ruleset
apply/list), ``sysctl`` and ``execin`` (per-namespace settings and commands), ``netns``
(setns(2) in worker threads) and ``errors`` (error type, errno wording).
"""

__version__ = "0.1.0"
