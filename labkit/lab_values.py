"""The plain values ``Lab`` returns for changes and endpoints, with kubectl-like reprs.

Owns ``Changes`` (what an apply/delete/label did), ``Endpoints`` (a Service's endpoints,
ready or not, by address, with the hand-written EndpointSlice each came from), ``EndpointSlices``
(like ``kubectl get endpointslices``) and ``Samples`` (the attempts of ``lab.sample``, with a tally of who
answered) and ``Lookup`` (a DNS lookup from inside a pod); they import nothing of labkit, so any
layer may build them.
"""
from __future__ import annotations

import html
from collections import Counter
from typing import Any


class Changes(list):
    """What an apply/delete/label did, one ``Change`` per object (repr like kubectl's output)."""

    def __repr__(self) -> str:
        return "\n".join(str(c) for c in self) if self else "(no changes)"

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(repr(self)) + "</pre>"


class Endpoints(list):
    """A Service's endpoints (``labkit.semantics.services.Endpoint``), with a kubectl-like repr."""

    def __init__(self, service: str, items: list):
        super().__init__(items)
        self.service = service

    @property
    def ready(self) -> list:
        return [e for e in self if e.ready]

    def __repr__(self) -> str:
        ordered = sorted(self, key=_by_address)
        ready = ",".join(f"{e.ip}:{e.port}" for e in ordered if e.ready) or "<none>"
        lines = [f"Endpoints {self.service}: {ready}"]
        lines += [f"  not ready: {e.pod + ' ' if e.pod else ''}{e.ip}:{e.port}"
                  + (f" on {_node(e)}" if _node(e) else "")
                  for e in ordered if not e.ready]
        by_slice: dict[str, list[str]] = {}
        for e in ordered:
            if getattr(e, "slice", None):
                by_slice.setdefault(e.slice, []).append(f"{e.ip}:{e.port}")
        lines += [f"  from EndpointSlice {name}: {', '.join(found)}" for name, found in sorted(by_slice.items())]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(repr(self)) + "</pre>"


def _node(endpoint: Any) -> str | None:
    node = getattr(endpoint, "node", None)
    return f"node-{node}" if node else None


class EndpointSlices(list):
    """EndpointSlices (``labkit.semantics.services.SliceView``), with the repr of ``kubectl get
    endpointslices``: NAME ADDRESSTYPE PORTS ENDPOINTS (all addresses, ready or not; at most three)."""

    def __init__(self, items: list, namespace: str | None = None):
        super().__init__(items)
        self.namespace = namespace

    def rows(self) -> list[list[str]]:
        head = ["NAMESPACE"] if self.namespace is None else []
        out = [head + ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS"]]
        for s in self:
            ports = ",".join(str(p[1]) for p in s.ports) or "<unset>"
            addresses = [e[0] for e in s.endpoints]
            shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")
            out.append(([s.namespace] if self.namespace is None else []) + [s.name, s.address_type, ports,
                                                                             shown or "<unset>"])
        return out

    def __repr__(self) -> str:
        if not self:
            where = f" in {self.namespace} namespace" if self.namespace else ""
            return f"No resources found{where}."
        rows = self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def _repr_html_(self) -> str:
        if not self:
            return "<pre>" + html.escape(repr(self)) + "</pre>"
        rows = self.rows()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td><code>{html.escape(c)}</code></td>" for c in r) + "</tr>"
                       for r in rows[1:])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _by_address(endpoint: Any) -> tuple:
    return tuple(int(part) for part in endpoint.ip.split(".")), endpoint.port


class Samples(list):
    """The results of ``lab.sample``: a list of ``ProbeResult``; ``tally()`` counts who answered."""

    def tally(self) -> Counter:
        """How many attempts each pod answered (failed attempts count under ``"failed: <error>"``)."""
        return Counter(r.answered_by if r.ok else f"failed: {r.error}" for r in self)

    def __repr__(self) -> str:
        if not self:
            return "Samples: no attempts"
        first = self[0]
        counted = ", ".join(f"{who} {n}" for who, n in sorted(self.tally().items()))
        return f"{len(self)} attempts {first.src} -> {first.dst}:{first.port}/{first.protocol}: {counted}"

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(repr(self)) + "</pre>"


class Lookup:
    """A DNS lookup made from inside a pod (``lab.lookup``): the addresses found, and nslookup's own output."""

    def __init__(self, pod: str, name: str, exit_code: int, output: str):
        self.pod, self.name, self.exit_code, self.output = pod, name, exit_code, output
        lines = output.splitlines()
        after_name = next((i for i, line in enumerate(lines) if line.startswith("Name:")), len(lines))
        self.addresses = tuple(line.split()[-1] for line in lines[after_name:] if line.startswith("Address:"))

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and bool(self.addresses)

    def __repr__(self) -> str:
        found = ", ".join(self.addresses) if self.ok else "no address"
        return f"{self.name} from {self.pod}: {found} (nslookup exit {self.exit_code})\n{self.output.rstrip()}"

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(repr(self)) + "</pre>"
