"""``nft`` and ``nft-list``: apply a whole ruleset atomically, read tables back.

``nft``: ``{"ruleset": text, "check": false, "netns"?: path}`` runs ``nft -f -`` (``-c``
when checking) once, so the ruleset is one kernel transaction; reply ``{"ok": true,
"ms": 12.3, "checked": bool}``; failure -> NodeError whose message is nft's stderr (line
numbers kept). ``{"list": [...]}`` in an ``nft`` request is the same as ``nft-list``.
``nft-list``: ``{"tables": ["ip labkit-svc", "table inet labkit-pol"], "json"?: bool}``
-> ``{"text": "...", "tables": {"ip labkit-svc": "..."}, "missing": [...]}``; tables
that do not exist are skipped. ``netns`` runs nft under ``nsenter --net=PATH``.
"""

import json
import re
import subprocess
import time

from .errors import NodeError
from .netns import checked_netns

NFT_TIMEOUT = 120
_TABLE = re.compile(r"^(?:table\s+)?(ip|ip6|inet|arp|bridge|netdev)\s+([A-Za-z0-9_.-]+)$")


def _prefix(netns):
    return ["nsenter", "--net=%s" % netns, "--"] if netns else []


def run_nft(args, stdin_text=None, netns=None):
    """Run nft; returns (returncode, stdout, stderr) as text."""
    argv = _prefix(netns) + ["nft"] + list(args)
    try:
        proc = subprocess.run(argv, input=(stdin_text or "").encode(), capture_output=True,
                              timeout=NFT_TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise NodeError("%s not found (is nftables installed?)" % argv[0]) from exc
    except subprocess.TimeoutExpired as exc:
        raise NodeError("nft timed out after %ss" % NFT_TIMEOUT) from exc
    return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"))


def _netns(request):
    netns = request.get("netns")
    if netns is not None and (not isinstance(netns, str) or not netns):
        raise NodeError("netns: must be a non-empty string")
    checked_netns(netns)
    return netns


def apply(request):
    if "list" in request:
        return list_tables(dict(request, tables=request["list"]))
    ruleset = request.get("ruleset")
    if not isinstance(ruleset, str):
        raise NodeError("ruleset: must be a string of nft commands")
    check = request.get("check", False)
    if not isinstance(check, bool):
        raise NodeError("check: must be true or false")
    args = (["-c"] if check else []) + ["-f", "-"]
    started = time.monotonic()
    code, _, err = run_nft(args, ruleset, _netns(request))
    ms = round((time.monotonic() - started) * 1000.0, 1)
    if code != 0:
        raise NodeError(err.strip() or "nft exited with code %d" % code,
                        exit_code=code, ms=ms)
    return {"ok": True, "ms": ms, "checked": check}


def parse_table(spec):
    """'table ip labkit-svc' or 'ip labkit-svc' -> ('ip', 'labkit-svc')."""
    match = _TABLE.match(spec.strip()) if isinstance(spec, str) else None
    if not match:
        raise NodeError("tables: bad table %r (want e.g. 'ip labkit-svc')" % (spec,))
    return match.group(1), match.group(2)


def list_tables(request):
    tables = request.get("tables")
    if isinstance(tables, str):
        tables = [tables]
    if not isinstance(tables, list):
        raise NodeError("tables: must be a list like ['ip labkit-svc']")
    as_json = request.get("json", False)
    netns = _netns(request)
    texts, parsed, missing = {}, {}, []
    for spec in tables:
        family, name = parse_table(spec)
        key = "%s %s" % (family, name)
        code, out, err = run_nft((["-j"] if as_json else []) + ["list", "table", family, name],
                                 netns=netns)
        if code != 0:
            if "No such file or directory" in err or "does not exist" in err:
                missing.append(key)
                continue
            raise NodeError("nft list table %s: %s" % (key, err.strip()), exit_code=code)
        texts[key] = out
        if as_json:
            try:
                parsed[key] = json.loads(out)
            except ValueError as exc:
                raise NodeError("nft -j list table %s: output is not JSON" % key) from exc
    reply = {"text": "".join(texts.values()), "tables": texts, "missing": missing}
    if as_json:
        reply["json"] = parsed
    return reply
