"""What an exercise expects, and how each expectation is judged against a running lab.

Owns the expectation kinds: ``Reach`` (a connection must work or must be blocked; probed,
all of an exercise's at once), ``Serves`` (a Service name spreads a client over exactly the
pods of one Deployment), ``EndpointsOf`` (a Service's ready endpoints are exactly those pods),
``KeepsReadiness``, ``PodShape`` (containers and their ports), ``Localhost`` (one container
reaches another of its pod over ``localhost``) and ``Answer`` (a value the learner found,
judged against what the lab really does). Each judges behaviour through the public ``Lab``
API; the model is read only for the shape of pods. Refs starting with ``@`` name the
check's own fresh pods (``labkit.exercises.visitors``).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from labkit.errors import LabkitError, NotFound


@dataclass(frozen=True)
class ExpectationResult:
    """How one expectation fared: ``passed`` and what was seen (``detail``)."""

    text: str
    passed: bool
    detail: str


@dataclass
class Context:
    """What judging needs: the lab, the check's fresh pods (``@name`` -> pod ref), the learner's answers."""

    lab: Any
    visitors: dict[str, str] = field(default_factory=dict)
    answers: Mapping[str, Any] = field(default_factory=dict)

    def ref(self, name: str) -> str:
        return self.visitors.get(name, name)


def _owned_pods(lab: Any, owner: str) -> list[str]:
    """The pods of Deployment ``owner`` (``ns/name``), as the model has them now."""
    return sorted(ref for ref, pod in lab.cluster.pods.items() if pod.owner == f"Deployment {owner}")


def _missing(exc: LabkitError) -> str:
    if isinstance(exc, NotFound):
        return f"{exc}: run the cells that create this exercise's objects first"
    return f"could not test it: {exc}"


@dataclass(frozen=True)
class Reach:
    """``src`` can (``allowed=True``) or cannot open ``port``/``protocol`` on ``dst``.

    ``src`` is a pod ref, ``@visitor`` or ``"internet"``; ``dst`` a pod ref, ``@visitor``, a DNS
    name as the source pod would use it, or an IP. ``text`` says it in the words of the exercise.
    """

    src: str
    dst: str
    port: int
    allowed: bool
    text: str
    protocol: str = "TCP"

    def request(self, ctx: Context) -> tuple[str, str, int, str]:
        return ctx.ref(self.src), ctx.ref(self.dst), self.port, self.protocol

    def judge_result(self, ctx: Context, result: Any) -> ExpectationResult:
        src, dst, port, protocol = self.request(ctx)
        where = f"{src} -> {dst}:{port}/{protocol}"
        if not self.allowed and not result.ok and result.error == "connection refused" and "/" in dst:
            # policies come before listeners: a refusal means the packet reached the pod
            return ExpectationResult(self.text, False, f"{where} should be blocked, but the connection reached "
                                     f"{dst}, which refused it (nothing listens there): the policies let it through"
                                     + _why(ctx.lab, src, dst, port, protocol))
        if result.ok == self.allowed:
            seen = f"answered by {result.answered_by}" if result.ok else f"blocked ({result.error})"
            return ExpectationResult(self.text, True, f"{where}: {seen}")
        if self.allowed:
            detail = f"{where} should work, but it failed: {result.error}"
        else:
            detail = f"{where} should be blocked, but {result.answered_by} answered"
        return ExpectationResult(self.text, False, detail + _why(ctx.lab, src, dst, port, protocol))


def _why(lab: Any, src: str, dst: str, port: int, protocol: str) -> str:
    """The oracle's reasons, as a hint of what decided (the learner's policies, by name)."""
    try:
        explanation = lab.explain(src, dst, port=port, protocol=protocol)
    except LabkitError:
        return ""
    reasons = [r for r in explanation.reasons if "isolated" in r or "no NetworkPolicy" in r
               or "cannot resolve" in r or "refuse" in r or "listens" in r or "endpoints" in r]
    picked = list(dict.fromkeys(reasons[-2:] or explanation.reasons[-1:]))
    return "".join(f"\n  why: {r}" for r in picked)


@dataclass(frozen=True)
class Serves:
    """From ``src``, the name ``name`` on ``port`` is answered, every time, by pods of Deployment ``owner``."""

    src: str
    name: str
    port: int
    owner: str
    text: str
    attempts: int = 12
    wrong_pods: str = "the selector picks the wrong pods"  # what answers from other pods mean here
    spread: bool = True  # every pod of the Deployment must get some of the attempts

    def judge(self, ctx: Context) -> ExpectationResult:
        src = ctx.ref(self.src)
        try:
            results = ctx.lab.sample(src, self.name, port=self.port, count=self.attempts)
        except LabkitError as exc:
            return ExpectationResult(self.text, False, _missing(exc))
        wanted = set(_owned_pods(ctx.lab, self.owner))
        answered = [r.answered_by for r in results if r.ok]
        strangers = sorted({a for a in answered if a not in wanted})
        where = f"{src} -> {self.name}:{self.port}"
        if strangers:
            return ExpectationResult(self.text, False, f"{where}: answered by {', '.join(strangers)}, which are not "
                                     f"pods of Deployment {self.owner}: {self.wrong_pods}")
        if len(answered) < len(results):
            errors = sorted({r.error for r in results if not r.ok})
            return ExpectationResult(self.text, False, f"{where}: {len(results) - len(answered)} of {len(results)} "
                                     f"attempts failed ({'; '.join(map(str, errors))}){_endpoint_words(ctx, self.name, src)}")
        spread = sorted(set(answered))
        if self.spread and len(wanted) > 1 and len(spread) < 2:
            return ExpectationResult(self.text, False, f"{where}: only {spread[0]} answered {len(results)} attempts: "
                                     f"the other pods of {self.owner} get no traffic")
        return ExpectationResult(self.text, True, f"{where}: answered by {', '.join(spread)}")


def _endpoint_words(ctx: Context, name: str, src: str) -> str:
    """What ``kubectl get endpoints`` would say for the Service behind ``name`` (the guide's next step)."""
    namespace = src.split("/")[0]
    parts = name.split(".")
    service = f"{parts[1] if len(parts) > 1 else namespace}/{parts[0]}"
    try:
        endpoints = ctx.lab.endpoints(service)
    except LabkitError:
        return f"\n  look: there is no Service {service} (lab.endpoints('{service}'))"
    return f"\n  look: {repr(endpoints).splitlines()[0]} (lab.endpoints('{service}'))"


@dataclass(frozen=True)
class EndpointsOf:
    """Service ``service``'s ready endpoints are exactly the pods of Deployment ``owner``."""

    service: str
    owner: str
    text: str

    def judge(self, ctx: Context) -> ExpectationResult:
        try:
            endpoints = ctx.lab.endpoints(self.service)
        except LabkitError as exc:
            return ExpectationResult(self.text, False, _missing(exc))
        wanted = set(_owned_pods(ctx.lab, self.owner))
        ready = {e.pod for e in endpoints.ready}
        seen = repr(endpoints).replace("\n", "; ")
        if not wanted:
            return ExpectationResult(self.text, False, f"Deployment {self.owner} has no pods: keep its replicas")
        if ready == wanted:
            return ExpectationResult(self.text, True, seen)
        problems = []
        if not endpoints:
            problems.append("no endpoints at all: the selector matches no pod (compare it with the pods' labels)")
        if wanted - ready and endpoints:
            problems.append(f"not ready or missing: {', '.join(sorted(wanted - ready))}")
        if ready - wanted:
            problems.append(f"pods of another app: {', '.join(sorted(ready - wanted))}")
        return ExpectationResult(self.text, False, f"{seen}\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class KeepsReadiness:
    """Every pod of Deployment ``owner`` still has a readinessProbe (fix it, do not delete it)."""

    owner: str
    text: str

    def judge(self, ctx: Context) -> ExpectationResult:
        pods = _owned_pods(ctx.lab, self.owner)
        bare = [p for p in pods if not any(c.readiness_probe for c in ctx.lab.cluster.pods[p].spec.containers)]
        if not pods:
            return ExpectationResult(self.text, False, f"Deployment {self.owner} has no pods: keep its replicas")
        if bare:
            return ExpectationResult(self.text, False, f"{', '.join(bare)} have no readinessProbe: without one a pod "
                                     "gets traffic before it can serve; fix the probe instead of removing it")
        blind = sorted({why for p in pods for why in _blind_probes(ctx.lab.cluster.pods[p])})
        if blind:
            return ExpectationResult(self.text, False, "; ".join(blind) + ": a readiness probe must ask the app "
                                     "whether it can serve")
        return ExpectationResult(self.text, True, f"{len(pods)} pods, each with a readinessProbe that asks the app")


_CONSTANT = {("true",), (":",), ("exit", "0"), ("sh", "-c", "true"), ("sh", "-c", "exit 0"), ("/bin/true",)}


def _blind_probes(pod: Any) -> list[str]:
    """Why a pod's readiness probes cannot tell whether the app serves: a port nothing of the container
    serves, or a command that always succeeds."""
    reasons = []
    for c in pod.spec.containers:
        probe = c.readiness_probe
        if probe is None:
            continue
        if probe.kind == "exec" and tuple(probe.command) in _CONSTANT:
            reasons.append(f"container {c.name}'s probe `{' '.join(probe.command)}` always succeeds")
        elif probe.kind in ("tcpSocket", "httpGet"):  # a number: any port of the pod; a name: the container's
            served = {p.container_port for p in pod.spec.served_ports()} | {p.name for p in c.ports if p.name}
            if probe.port not in served:
                reasons.append(f"container {c.name}'s {probe.kind} probe checks port {probe.port}, which it does not "
                               "serve")
    return reasons


@dataclass(frozen=True)
class PodShape:
    """Pod ``pod`` has these containers, each declaring these ports (container name -> port)."""

    pod: str
    containers: tuple[tuple[str, int], ...]
    text: str

    def judge(self, ctx: Context) -> ExpectationResult:
        pod = ctx.lab.cluster.pods.get(self.pod)
        if pod is None:
            return ExpectationResult(self.text, False, f"there is no pod {self.pod} yet: apply yours")
        have = {c.name: {p.container_port for p in c.ports} for c in pod.spec.containers}
        missing = [f"{name} (port {port})" for name, port in self.containers if port not in have.get(name, set())]
        if missing:
            shown = ", ".join(f"{n}: {sorted(p) or 'no ports'}" for n, p in have.items())
            return ExpectationResult(self.text, False, f"{self.pod} has {shown}; missing: {', '.join(missing)}")
        return ExpectationResult(self.text, True, f"{self.pod}: " + ", ".join(f"{n} on {p}" for n, p in self.containers))


@dataclass(frozen=True)
class Localhost:
    """In ``pod``, container ``container`` reaches ``localhost:port`` and its own pod answers."""

    pod: str
    container: str
    port: int
    text: str

    def judge(self, ctx: Context) -> ExpectationResult:
        argv = ["curl", "-s", "-m", "2", f"http://localhost:{self.port}/"]
        try:
            result = ctx.lab.exec(self.pod, argv, container=self.container)
        except LabkitError as exc:
            return ExpectationResult(self.text, False, _missing(exc))
        where = f"in {self.pod}, container {self.container}: curl localhost:{self.port}"
        if result.exit_code == 0 and self.pod in result.output:
            return ExpectationResult(self.text, True, f"{where}: {result.output.strip()}")
        said = [line for line in result.output.splitlines() if line.strip() and not line.startswith("# simulated")]
        why = {7: "connection refused: nothing listens on that port in this pod"}.get(result.exit_code)
        return ExpectationResult(self.text, False, f"{where} failed (exit {result.exit_code}): "
                                 f"{why or ' '.join(said)[:200] or 'no answer'}")


@dataclass(frozen=True)
class Resolves:
    """From ``pod``, ``nslookup name`` answers (its DNS queries reach kube-dns and come back)."""

    pod: str
    name: str
    text: str

    def judge(self, ctx: Context) -> ExpectationResult:
        try:
            result = ctx.lab.exec(ctx.ref(self.pod), ["nslookup", "-timeout=1", "-retry=1", self.name])
        except LabkitError as exc:
            return ExpectationResult(self.text, False, _missing(exc))
        said = " ".join(line.strip() for line in result.output.splitlines()
                        if line.strip() and not line.startswith("# simulated"))
        where = f"in {self.pod}: nslookup {self.name}"
        if result.exit_code == 0:
            return ExpectationResult(self.text, True, f"{where}: answered")
        return ExpectationResult(self.text, False, f"{where} failed (exit {result.exit_code}): {said[:200]}")


@dataclass(frozen=True)
class PodsAnswer:
    """Every pod of Deployment ``owner`` answers ``src`` on ``port`` (the app still serves where it did)."""

    src: str
    owner: str
    port: int
    text: str

    def judge(self, ctx: Context) -> ExpectationResult:
        pods = _owned_pods(ctx.lab, self.owner)
        if not pods:
            return ExpectationResult(self.text, False, f"Deployment {self.owner} has no pods: keep its replicas")
        try:
            results = ctx.lab.probe_many([(ctx.ref(self.src), pod, self.port, "TCP") for pod in pods])
        except LabkitError as exc:
            return ExpectationResult(self.text, False, _missing(exc))
        silent = [f"{pod} ({r.error})" for pod, r in zip(pods, results) if not r.ok]
        if silent:
            return ExpectationResult(self.text, False, f"not answering on {self.port}: {', '.join(silent)}: other "
                                     "clients use that port; fix the Service or the probe, not the app")
        return ExpectationResult(self.text, True, f"{len(pods)} pods answer on {self.port}")


@dataclass(frozen=True)
class WouldDrop:
    """``src``'s egress policies drop a connection to ``ip`` on ``port``: an address outside the lab where no
    host answers, so no probe can show it; judged by labkit's policy semantics (the same the kernel rules are
    rendered from, and that the conformance suite holds to the upstream e2e behaviour)."""

    src: str
    ip: str
    port: int
    text: str
    protocol: str = "TCP"

    def judge(self, ctx: Context) -> ExpectationResult:
        from labkit.semantics import policy as pol  # noqa: PLC0415 - the policy semantics, read-only
        pod = ctx.lab.cluster.pods.get(ctx.ref(self.src))
        if pod is None:
            return ExpectationResult(self.text, False, f"there is no pod {self.src}: run the cells that create "
                                     "this exercise's objects first")
        decision = pol.egress(ctx.lab.cluster, pod, None, self.ip, self.port, self.protocol)
        where = f"{self.src} -> {self.ip}:{self.port}/{self.protocol}"
        if decision.allowed:
            return ExpectationResult(self.text, False, f"{where} would be allowed: {decision.reason}")
        return ExpectationResult(self.text, True, f"{where} would be dropped: {decision.reason}")


@dataclass(frozen=True)
class Answer:
    """The learner's answer ``key``, judged by ``judge_fn(lab, value) -> (passed, detail)``;
    ``reference(lab)`` gives the right value for this lab (shown by ``solution``)."""

    key: str
    text: str
    judge_fn: Callable[[Any, Any], tuple[bool, str]]
    reference: Callable[[Any], Any]

    def judge(self, ctx: Context) -> ExpectationResult:
        if self.key not in ctx.answers or ctx.answers[self.key] in (None, ""):
            return ExpectationResult(self.text, False, f"no answer yet: fill in answers[{self.key!r}] and check "
                                     "again with check(..., answers=answers)")
        try:
            passed, detail = self.judge_fn(ctx.lab, ctx.answers[self.key])
        except LabkitError as exc:
            return ExpectationResult(self.text, False, f"{ctx.answers[self.key]!r}: {_missing(exc)}")
        return ExpectationResult(self.text, passed, f"your answer {ctx.answers[self.key]!r}: {detail}")


def address(value: Any) -> str:
    """An answer as an address: blanks and a ``/32`` (as ``ip addr`` prints it) taken off."""
    text = str(value).strip()
    return text[:-3] if text.endswith("/32") else text


def is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value).strip())
    except ValueError:
        return False
    return True


def judge_all(expectations: tuple[Any, ...], ctx: Context, timeout: float = 1.0) -> list[ExpectationResult]:
    """Judge every expectation, in order; the ``Reach`` ones are probed all at once."""
    unplaced = {id(e) for e in expectations if isinstance(e, Reach)
                and any(r.startswith("@") and r not in ctx.visitors for r in (e.src, e.dst))}
    reaches = [e for e in expectations if isinstance(e, Reach) and id(e) not in unplaced]
    probed: dict[int, Any] = {}
    if reaches:
        try:
            results = ctx.lab.probe_many([e.request(ctx) for e in reaches], timeout=timeout)
            probed = {id(e): r for e, r in zip(reaches, results)}
        except LabkitError:  # one bad ref must not hide the others: judge them one by one
            probed = {}
    outcomes = []
    for e in expectations:
        if id(e) in unplaced:
            outcomes.append(ExpectationResult(e.text, False, "the check could not place its own pod there: its "
                                              "namespace is missing; run the cells that create this exercise's "
                                              "objects first"))
        elif not isinstance(e, Reach):
            outcomes.append(e.judge(ctx))
        elif id(e) in probed:
            outcomes.append(e.judge_result(ctx, probed[id(e)]))
        else:
            try:
                outcomes.append(e.judge_result(ctx, ctx.lab.probe(*e.request(ctx), timeout=timeout)))
            except LabkitError as exc:
                outcomes.append(ExpectationResult(e.text, False, _missing(exc)))
    return outcomes
