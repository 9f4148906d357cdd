"""Policy variants side by side: apply each in turn, probe, and set the results beside predictions.

Owns ``Comparison`` (one row per variant, one column per probe; each cell what was observed,
what the learner predicted and whether the oracle agreed), its text and HTML tables, and
``run``, which drives a lab through its public methods only (``apply``, ``probe``,
``delete``): each variant's NetworkPolicies are applied, every probe is made, and the
policies are deleted again, so the lab ends as it began. Variants may hold NetworkPolicies
only, and none may replace a policy the lab already has.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Mapping

from labkit.errors import ModelError
from labkit.model.manifests import load_documents
from labkit.results import ProbeResult

_PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class ProbeSpec:
    """One column: a connection attempt ``src -> dst`` on ``port/protocol``, under a label."""

    label: str
    src: str
    dst: str
    port: int = 80
    protocol: str = "TCP"

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst} {self.port}/{self.protocol}"


def probe_specs(probes: Mapping[str, Any]) -> list[ProbeSpec]:
    """Read ``{label: (src, dst[, port[, protocol]])}`` (or a dict with those keys) into specs."""
    if not isinstance(probes, Mapping) or not probes:
        raise ModelError("give the probes as a dict {label: (src, dst, port)}, e.g. "
                         "{'same namespace': ('x/a', 'x/b', 80)}", path="probes")
    specs = []
    for label, spec in probes.items():
        path = f"probes[{label!r}]"
        if not isinstance(label, str) or not label:
            raise ModelError("each probe needs a non-empty text label", path=path)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"src", "dst", "port", "protocol"}
            if unknown or not {"src", "dst"} <= set(spec):
                raise ModelError("a probe given as a dict has the keys src, dst and optionally port, protocol",
                                 path=path)
            spec = (spec["src"], spec["dst"], spec.get("port", 80), spec.get("protocol", "TCP"))
        if not isinstance(spec, (tuple, list)) or not 2 <= len(spec) <= 4:
            raise ModelError("a probe is (src, dst), (src, dst, port) or (src, dst, port, protocol)", path=path)
        src, dst, port, protocol = (list(spec) + [80, "TCP"][len(spec) - 2:])[:4]
        if not isinstance(src, str) or not isinstance(dst, str):
            raise ModelError("src and dst are text: a pod ref ('ns/name'), 'internet', an IP or a DNS name",
                             path=path)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ModelError(f"port {port!r} is not a port number (1-65535)", path=f"{path}.port")
        if protocol not in _PROTOCOLS:
            raise ModelError(f"protocol {protocol!r}: use TCP, UDP or SCTP", path=f"{path}.protocol")
        specs.append(ProbeSpec(label, src, dst, port, protocol))
    return specs


def _variant_documents(variants: Mapping[str, Any]) -> dict[str, list[dict]]:
    if not isinstance(variants, Mapping) or not variants:
        raise ModelError("give the variants as a dict {name: NetworkPolicy YAML}", path="variants")
    out = {}
    for name, source in variants.items():
        path = f"variants[{name!r}]"
        if not isinstance(name, str) or not name:
            raise ModelError("each variant needs a non-empty text name", path=path)
        docs = [] if source is None or (isinstance(source, str) and not source.strip()) else load_documents(source)
        for i, doc in enumerate(docs):
            if doc.get("kind") != "NetworkPolicy":
                raise ModelError(f"a variant may hold NetworkPolicies only, not {doc.get('kind')!r}: apply other "
                                 "objects with lab.apply before comparing", path=f"{path}[{i}].kind")
        out[name] = docs
    return out


def _ref(doc: dict) -> tuple[str, str]:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def _predictions(predictions: Mapping[str, Any] | None, variants: list[str],
                 specs: list[ProbeSpec]) -> dict[str, dict[str, bool | None]]:
    labels = [s.label for s in specs]
    out = {v: {label: None for label in labels} for v in variants}
    if predictions is None:
        return out
    if not isinstance(predictions, Mapping):
        raise ModelError("predictions are a dict {variant: {probe label: True, False or None}}", path="predictions")
    for variant, row in predictions.items():
        if variant not in out:
            raise ModelError(f"no variant is called {variant!r} (variants: {', '.join(map(repr, variants))})",
                             path=f"predictions[{variant!r}]")
        if not isinstance(row, Mapping):
            raise ModelError("each variant's predictions are a dict {probe label: True, False or None}",
                             path=f"predictions[{variant!r}]")
        for label, guess in row.items():
            path = f"predictions[{variant!r}][{label!r}]"
            if label not in labels:
                raise ModelError(f"no probe is labelled {label!r} (probes: {', '.join(map(repr, labels))})", path=path)
            if guess is not None and not isinstance(guess, bool):
                raise ModelError(f"{guess!r}: predict True (connects), False (blocked) or None (no guess)", path=path)
            out[variant][label] = guess
    return out


@dataclass
class Comparison:
    """What each variant did to each probe. ``str()``/``repr`` is a text table; in Jupyter, HTML."""

    variants: list[str]
    probes: list[ProbeSpec]
    results: dict[tuple[str, str], ProbeResult]
    predictions: dict[str, dict[str, bool | None]] = field(default_factory=dict)
    simulated: bool = False

    def allowed(self, variant: str, probe: str) -> bool:
        """Did the probe labelled ``probe`` connect under ``variant``?"""
        if (variant, probe) not in self.results:
            raise ModelError(f"no cell ({variant!r}, {probe!r}): variants {self.variants}, "
                             f"probes {[p.label for p in self.probes]}", path="comparison")
        return self.results[(variant, probe)].ok

    def observed(self) -> dict[str, dict[str, bool]]:
        """``{variant: {probe label: connected?}}``, the shape of the predictions."""
        return {v: {p.label: self.allowed(v, p.label) for p in self.probes} for v in self.variants}

    def wrong_predictions(self) -> list[tuple[str, str]]:
        """Cells where a prediction was made and the probe did otherwise."""
        return [(v, p.label) for v in self.variants for p in self.probes
                if self._guess(v, p.label) is not None and self._guess(v, p.label) != self.allowed(v, p.label)]

    def unpredicted(self) -> list[tuple[str, str]]:
        return [(v, p.label) for v in self.variants for p in self.probes if self._guess(v, p.label) is None]

    def differences(self) -> list[tuple[str, str]]:
        """Cells where the observation differs from the oracle's expectation (a bug or a lesson)."""
        return [key for key, r in self.results.items() if r.matches_oracle is False]

    def _guess(self, variant: str, probe: str) -> bool | None:
        return self.predictions.get(variant, {}).get(probe)

    def _cell(self, variant: str, probe: str) -> tuple[str, str]:
        ok, guess = self.allowed(variant, probe), self._guess(variant, probe)
        seen = "allowed" if ok else "blocked"
        mark = "" if guess is None else (" ✔" if guess == ok else " ✘")
        oracle = " !" if self.results[(variant, probe)].matches_oracle is False else ""
        return seen + mark + oracle, "" if guess is None else ("allowed" if guess else "blocked")

    def summary(self) -> str:
        made = len(self.variants) * len(self.probes) - len(self.unpredicted())
        wrong = len(self.wrong_predictions())
        text = (f"your predictions: {made - wrong} of {made} right" if made else
                "no predictions yet: fill in the prediction dict with True (connects) or False (blocked)")
        if self.differences():
            text += f"; {len(self.differences())} cell(s) marked ! differ from labkit's model"
        return text + (" (simulated)" if self.simulated else "")

    def __str__(self) -> str:
        head = ["variant"] + [p.label for p in self.probes]
        rows = [[v] + [self._cell(v, p.label)[0] for p in self.probes] for v in self.variants]
        widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        out = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
        out.insert(1, "-+-".join("-" * w for w in widths))
        out += ["", "probes: " + "; ".join(f"{p.label} = {p}" for p in self.probes),
                "✔/✘: your prediction was right/wrong. " + self.summary()]
        return "\n".join(out)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        th = "".join(f"<th title='{html.escape(str(p))}'>{html.escape(p.label)}<br><small>"
                     f"{html.escape(str(p))}</small></th>" for p in self.probes)
        body = []
        for v in self.variants:
            cells = []
            for p in self.probes:
                text, guess = self._cell(v, p.label)
                colour = "#dafbe1" if self.allowed(v, p.label) else "#ffebe9"
                said = f"<br><small>you said: {guess}</small>" if guess else ""
                cells.append(f"<td style='background:{colour}'>{html.escape(text)}{said}</td>")
            body.append(f"<tr><th style='text-align:left'><code>{html.escape(v)}</code></th>{''.join(cells)}</tr>")
        return (f"<table><tr><th>variant</th>{th}</tr>{''.join(body)}</table>"
                f"<p>✔/✘: your prediction was right/wrong. {html.escape(self.summary())}</p>")

    def to_dict(self) -> dict:
        return {"variants": list(self.variants),
                "probes": [{"label": p.label, "src": p.src, "dst": p.dst, "port": p.port, "protocol": p.protocol}
                           for p in self.probes],
                "observed": self.observed(), "predictions": {v: dict(r) for v, r in self.predictions.items()},
                "results": [{"variant": v, "probe": p, **r.to_dict()} for (v, p), r in self.results.items()],
                "simulated": self.simulated}


def run(lab, variants: Mapping[str, Any], probes: Mapping[str, Any],
        predictions: Mapping[str, Any] | None = None, timeout: float = 1.0) -> Comparison:
    """Apply each variant to ``lab``, make every probe, delete the variant again (see the module)."""
    specs = probe_specs(probes)
    docs = _variant_documents(variants)
    names = list(docs)
    guesses = _predictions(predictions, names, specs)
    existing = set(lab.cluster.policies)
    for name, items in docs.items():
        for i, doc in enumerate(items):
            ns, policy = _ref(doc)
            if f"{ns}/{policy}" in existing:
                raise ModelError(f"NetworkPolicy {ns}/{policy} already exists in the lab, and comparing would "
                                 "replace it and then delete it: give the variant's policy another name, or "
                                 f"delete yours first", path=f"variants[{name!r}][{i}].metadata.name")
    results: dict[tuple[str, str], ProbeResult] = {}
    for name, items in docs.items():
        applied: list[tuple[str, str]] = []
        try:
            if items:
                lab.apply(items)
                applied = sorted({_ref(d) for d in items})
            for spec in specs:
                results[(name, spec.label)] = lab.probe(spec.src, spec.dst, port=spec.port, protocol=spec.protocol,
                                                        timeout=timeout)
        finally:
            for ns, policy in applied:
                lab.delete("networkpolicy", policy, namespace=ns)
    return Comparison(names, specs, results, guesses, lab.simulated)
