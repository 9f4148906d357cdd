"""Designs learners really write for each exercise: wrong ones every check must fail, and right
ones (the reference solution and honest alternatives) every check must pass.

A design is YAML applied to the exercise's world (and the policies the notebook gave before
it), or a list of ``("delete", kind, name, namespace)`` steps mixed with YAML, or, for question
exercises, a dict of answers. ``note`` is a phrase the check's feedback must contain.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labkit import exercises


@dataclass(frozen=True)
class Design:
    name: str
    steps: tuple[Any, ...]  # YAML texts and ("delete", kind, name, namespace) tuples, applied in order
    right: bool = False
    note: str = ""  # must appear in the result's notes or failing details
    answers: dict[str, Any] = field(default_factory=dict)


def policy(namespace: str, name: str, spec: str) -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n"
            f"  namespace: {namespace}\nspec:\n{body}\n")


ALLOW_ALL = "podSelector: {}\npolicyTypes: [Ingress, Egress]\ningress: [{}]\negress: [{}]"
DENY_EGRESS = "policyTypes: [Egress]"

# --------------------------------------------------------------------------------- 04
SANDBOX_FROM = """\
podSelector: {}
policyTypes: [Ingress]
ingress:
- from:
%s
"""


def sandbox(peers: str, namespace: str = "dev", ports: str = "") -> str:
    spec = SANDBOX_FROM % "\n".join("  " + line for line in peers.strip("\n").splitlines())
    return policy(namespace, "dev-sandbox", spec + (f"  ports: {ports}\n" if ports else ""))


RIGHT_PEERS = """\
- podSelector: {}
- namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
  podSelector: {matchLabels: {app: prometheus}}"""
TEAM_PEERS = RIGHT_PEERS.replace("kubernetes.io/metadata.name: monitoring", "team: monitoring")  # anyone can set it

DEV_SANDBOX = [
    Design("no policy at all", ()),
    Design("the notebook's draft (ingress: [])", (policy("dev", "dev-sandbox", "podSelector: {}\npolicyTypes: [Ingress]\n"
                                                                            "ingress: []"),)),
    Design("allow-all", (policy("dev", "dev-sandbox", ALLOW_ALL),)),
    Design("fence in the attackers (egress jails on shop and grafana)",
           (policy("shop", "jail", "podSelector: {}\n" + DENY_EGRESS),
            policy("monitoring", "jail-grafana", "podSelector: {matchLabels: {app: grafana}}\n" + DENY_EGRESS))),
    Design("the AND/OR trap: all of monitoring gets in",
           (sandbox("- podSelector: {}\n- namespaceSelector: {matchLabels: {team: monitoring}}\n"
                    "- podSelector: {matchLabels: {app: prometheus}}"),)),
    Design("too-wide peers: any namespace's prometheus",
           (sandbox("- podSelector: {}\n- namespaceSelector: {}\n  podSelector: {matchLabels: {app: prometheus}}"),)),
    Design("too-narrow ports: only 80 within dev", (sandbox(RIGHT_PEERS, ports="[{port: 80}]"),)),
    Design("the right policy in the wrong namespace", (sandbox(RIGHT_PEERS, namespace="monitoring"),)),
    Design("a typo in a selector", (sandbox("- podSelector: {}\n- namespaceSelector: {matchLabels: "
                                            "{kubernetes.io/metadata.name: monitoring}}\n"
                                            "  podSelector: {matchLabels: {app: promethues}}"),),
           note="matches no pod"),
    Design("egress instead of ingress", (policy("dev", "dev-sandbox", "podSelector: {}\npolicyTypes: [Egress]\n"
                                                "egress:\n- to:\n  - podSelector: {}"),)),
    Design("deleting a policy the scenario gave", (exercises.solution("04-dev-sandbox"),
                                                   ("delete", "networkpolicy", "web-from-monitoring", "shop"))),
    Design("the spoofable team label (any namespace labelled team=monitoring gets in)", (sandbox(TEAM_PEERS),)),
    Design("the reference solution", (exercises.solution("04-dev-sandbox"),), right=True),
    Design("alternative: matchExpressions on the namespace's name",
           (sandbox("- podSelector: {}\n- namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, "
                    "operator: In, values: [monitoring]}]}\n  podSelector: {matchLabels: {app: prometheus}}"),),
           right=True),
]

# --------------------------------------------------------------------------------- 05
DNS_RULE = """\
- to:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
    podSelector: {matchLabels: {k8s-app: kube-dns}}
  ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]"""
API_RULE = "- to:\n  - podSelector: {matchLabels: {app: api}}\n  ports: [{port: http-api}]"
STORAGE_RULE = "- to:\n  - ipBlock: {cidr: 203.0.113.10/32}\n  ports: [{port: 443}]"
API_FROM_WORKER = policy("shop", "api-from-worker", "podSelector: {matchLabels: {app: api}}\npolicyTypes: [Ingress]\n"
                         "ingress:\n- from:\n  - podSelector: {matchLabels: {app: worker}}\n  ports: [{port: http-api}]")


def worker(rules: str, namespace: str = "shop", selector: str = "{matchLabels: {app: worker}}") -> str:
    return policy(namespace, "worker-egress", f"podSelector: {selector}\npolicyTypes: [Egress]\negress:\n{rules}")


RIGHT_RULES = "\n".join((DNS_RULE, API_RULE, STORAGE_RULE))
WORKER_EGRESS = [
    Design("no policy at all", ()),
    Design("the notebook's draft (egress: [])", (policy("shop", "worker-egress", "podSelector: {matchLabels: {app: worker}}"
                                                                                   "\npolicyTypes: [Egress]\negress: []"),)),
    Design("allow-all", (policy("shop", "worker-egress", ALLOW_ALL),)),
    Design("fence the targets instead of the worker",
           (policy("ops", "no-worker", "podSelector: {}\npolicyTypes: [Ingress]\ningress:\n- from:\n"
                                       "  - namespaceSelector: {matchLabels: {team: ops}}"),
            policy("shop", "metrics-closed", "podSelector: {matchLabels: {app: api}}\npolicyTypes: [Ingress]\n"
                                             "ingress:\n- ports: [{port: http-api}]"))),
    Design("too-wide ports: the storage host on every port",
           (worker("\n".join((DNS_RULE, API_RULE, "- to:\n  - ipBlock: {cidr: 203.0.113.10/32}"))), API_FROM_WORKER)),
    Design("too-wide ports: the api pods on every port",
           (worker("\n".join((DNS_RULE, "- to:\n  - podSelector: {matchLabels: {app: api}}", STORAGE_RULE))),
            policy("shop", "api-from-worker", "podSelector: {matchLabels: {app: api}}\npolicyTypes: [Ingress]\n"
                                              "ingress:\n- from:\n  - podSelector: {matchLabels: {app: worker}}"))),
    Design("too-wide peers: http-api on any pod of any namespace",
           (worker("\n".join((DNS_RULE, "- to:\n  - namespaceSelector: {}\n  ports: [{port: http-api}]", STORAGE_RULE))),
            API_FROM_WORKER)),
    Design("too-wide peers: 443 to anywhere",
           (worker("\n".join((DNS_RULE, API_RULE, "- to:\n  - ipBlock: {cidr: 0.0.0.0/0}\n  ports: [{port: 443}]"))),
            API_FROM_WORKER)),
    Design("too-wide peers: DNS to any pod",
           (worker("\n".join(("- ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]", API_RULE,
                              STORAGE_RULE))), API_FROM_WORKER)),
    Design("too-wide subject: the whole of shop loses its egress",
           (worker(RIGHT_RULES, selector="{}"), API_FROM_WORKER)),
    Design("the right policy in the wrong namespace", (worker(RIGHT_RULES, namespace="ops"), API_FROM_WORKER),
           note="matches no pod"),
    Design("a typo in the pod selector", (worker(RIGHT_RULES, selector="{matchLabels: {app: wroker}}"), API_FROM_WORKER),
           note="matches no pod"),
    Design("deleting the scenario's api-from-web instead of adding api-from-worker",
           (worker(RIGHT_RULES), ("delete", "networkpolicy", "api-from-web", "shop")), note="api-from-web was deleted"),
    Design("widening the scenario's api-from-web",
           (worker(RIGHT_RULES), policy("shop", "api-from-web", "podSelector: {matchLabels: {app: api}}\n"
                                        "policyTypes: [Ingress]\ningress:\n- ports: [{port: http-api}]")),
           note="api-from-web was changed"),
    Design("the reference solution", (exercises.solution("05-worker-egress"),), right=True),
    Design("alternative: DNS to kube-system by namespace only",
           (worker("\n".join(("- to:\n  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}\n"
                              "  ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]", API_RULE,
                              STORAGE_RULE))), API_FROM_WORKER), right=True),
]

# --------------------------------------------------------------------------------- 06
SOLUTION_06 = exercises.solution("06-three-tier")


def swap(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


THREE_TIER = [
    Design("no policy at all", ()),
    Design("default-deny only", (policy("shop", "default-deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]"),)),
    Design("allow-all", (policy("shop", "default-deny", ALLOW_ALL),)),
    Design("fence in the attackers (the intruder, the db's and the frontend's egress)",
           (policy("guest", "jail", "podSelector: {matchLabels: {app: intruder}}\n" + DENY_EGRESS),
            policy("shop", "db-egress", "podSelector: {matchLabels: {app: db}}\n" + DENY_EGRESS),
            policy("shop", "frontend-egress", "podSelector: {matchLabels: {app: frontend}}\npolicyTypes: [Egress]\n"
                                              "egress:\n- to:\n  - podSelector: {matchLabels: {app: backend}}\n"
                                              "- ports: [{protocol: UDP, port: 53}]"))),
    Design("too-wide ports: frontend to backend on every port",
           (swap(SOLUTION_06, "        matchLabels: {app: backend}\n    ports: [{port: 8080}]",
                 "        matchLabels: {app: backend}"),
            policy("shop", "backend-all", "podSelector: {matchLabels: {app: backend}}\npolicyTypes: [Ingress]\n"
                                          "ingress:\n- from:\n  - podSelector: {matchLabels: {app: frontend}}"))),
    Design("too-wide peers: the backend to any pod of any namespace on 5432",
           (swap(SOLUTION_06, "    - podSelector:\n        matchLabels: {app: db}\n    ports: [{port: 5432}]",
                 "    - namespaceSelector: {}\n    ports: [{port: 5432}]"),)),
    Design("too-wide peers: the payment provider as 0.0.0.0/0",
           (swap(SOLUTION_06, "cidr: 203.0.113.10/32", "cidr: 0.0.0.0/0"),)),
    Design("too-wide peers: the backend open to every namespace",
           (swap(SOLUTION_06, "  - from:\n    - podSelector:\n        matchLabels: {app: frontend}\n    ports: [{port: 8080}]",
                 "  - from:\n    - namespaceSelector: {}\n    ports: [{port: 8080}]"),)),
    Design("the right policies in the wrong namespace", (SOLUTION_06.replace("namespace: shop", "namespace: guest"),)),
    Design("a typo in the db's selector",
           (swap(SOLUTION_06, "  podSelector:\n    matchLabels: {app: db}\n  policyTypes: [Ingress]",
                 "  podSelector:\n    matchLabels: {app: dbb}\n  policyTypes: [Ingress]"),), note="matches no pod"),
    Design("the reference solution", (SOLUTION_06,), right=True),
]

# --------------------------------------------------------------------------------- 01
PAIR = "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: demo}\nspec:\n  containers:\n%s"
SIDECAR = [
    Design("nothing", ()),
    Design("two pods instead of one",
           (PAIR % ("pair", "  - name: web\n    ports: [{containerPort: 80}]\n"),
            PAIR % ("pair-metrics", "  - name: metrics\n    ports: [{containerPort: 9100}]\n"))),
    Design("one container serving both ports", (PAIR % ("pair", "  - name: web\n    ports: [{containerPort: 80}, "
                                                                 "{containerPort: 9100}]\n"),)),
    Design("the sidecar in the other pod",
           (PAIR % ("pair", "  - name: web\n    ports: [{containerPort: 80}]\n"),
            PAIR % ("solo", "  - name: app\n    ports: [{containerPort: 80}]\n  - name: metrics\n"
                            "    ports: [{containerPort: 9100}]\n"))),
    Design("the reference solution", (exercises.solution("01-sidecar"),), right=True),
]

# --------------------------------------------------------------------------------- 03
STORE = exercises.world("03-debug-service")
DEBUG_SERVICE = [
    Design("nothing", ()),
    Design("only the selector fixed", (swap(STORE, "selector: {app: catalgo}", "selector: {app: catalog}"),)),
    Design("selectors widened to every backend",
           (swap(swap(exercises.solution("03-debug-service"), "selector: {app: catalog}", "selector: {tier: backend}"),
                 "selector: {app: orders}", "selector: {tier: backend}"),), note="not pods of Deployment"),
    Design("readiness probe removed instead of fixed",
           (swap(exercises.solution("03-debug-service"),
                 "        readinessProbe:\n          tcpSocket: {port: 8080}   # was 8081, where nothing listens\n"
                 "          periodSeconds: 1\n", ""),), note="readinessProbe"),
    Design("the reference solution", (exercises.solution("03-debug-service"),), right=True),
    Design("alternative: numeric targetPort 8080", (swap(exercises.solution("03-debug-service"),
                                                         "targetPort: http}]   # was 80", "targetPort: 8080}]   # was 80"),),
           right=True),
]

# --------------------------------------------------------------------------------- questions
RIGHT_02 = {"source_seen_by_a2": "10.244.2.2", "b1_next_hop": "10.244.2.1", "node_2_sends_a2_range_to": "198.18.0.1"}
NO_NAT = [
    Design("no answers", ()),
    Design("node-2's address as the source", (), answers={**RIGHT_02, "source_seen_by_a2": "198.18.0.2"},
           note="node-2's address"),
    Design("b1's gateway as the source", (), answers={**RIGHT_02, "source_seen_by_a2": "10.244.2.1"}, note="gateway"),
    Design("a2 as b1's next hop", (), answers={**RIGHT_02, "b1_next_hop": "10.244.1.4"}),
    Design("a2's IP as node-2's next hop", (), answers={**RIGHT_02, "node_2_sends_a2_range_to": "10.244.1.4"},
           note="whole range"),
    Design("the right answers", (), right=True, answers=RIGHT_02),
]
DNS_NAMES = [
    Design("the short name web (store's own web answers)", (),
           answers={"shortest_name": "web", "fully_qualified_name": "web.shop.svc.cluster.local"}, note="not shop's web"),
    Design("an address", (), answers={"shortest_name": "10.96.0.20", "fully_qualified_name": "web.shop.svc.cluster.local"},
           note="give a DNS name"),
    Design("a longer name than needed", (),
           answers={"shortest_name": "web.shop.svc", "fully_qualified_name": "web.shop.svc.cluster.local"},
           note="a shorter name"),
    Design("web.shop as the full name", (), answers={"shortest_name": "web.shop", "fully_qualified_name": "web.shop"}),
    Design("the right answers", (), right=True,
           answers={"shortest_name": "web.shop", "fully_qualified_name": "web.shop.svc.cluster.local"}),
]

DESIGNS: dict[str, list[Design]] = {
    "01-sidecar": SIDECAR, "02-no-nat": NO_NAT, "03-debug-service": DEBUG_SERVICE, "03-dns-names": DNS_NAMES,
    "04-dev-sandbox": DEV_SANDBOX, "05-worker-egress": WORKER_EGRESS, "06-three-tier": THREE_TIER,
}
# What a question exercise's lab needs besides its own world (03-dns-names asks about notebook 03's shop/web).
SHOP_WEB = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        ports: [{containerPort: 8080, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"""
EXTRA_WORLD = {"03-dns-names": SHOP_WEB}


def build(lab: Any, exercise_id: str, design: Design) -> None:
    """Apply the exercise's world, the policies its notebook gave, then the design's steps."""
    lab.apply(exercises.world(exercise_id))
    if exercise_id in EXTRA_WORLD:
        lab.apply(EXTRA_WORLD[exercise_id])
    if exercises.provided(exercise_id):
        lab.apply(exercises.provided(exercise_id))
    for step in design.steps:
        if isinstance(step, tuple):
            _, kind, name, namespace = step
            lab.delete(kind, name, namespace=namespace)
        else:
            lab.apply(step)


def feedback(result: Any) -> str:
    return "\n".join([*(o.detail for o in result.outcomes if not o.passed), *result.notes])


def reset(lab: Any, exercise_id: str) -> None:
    """Back to the exercise's start: the learner's policies and pods gone, the world and the given policies back."""
    given = set(exercises.exercise(exercise_id).provided and
                [f"{o.namespace}/{o.name}" for o in _policies(exercises.provided(exercise_id))])
    for ref in [r for r in lab.cluster.policies if r not in given and not r.startswith("kube-system/")]:
        namespace, name = ref.split("/", 1)
        lab.delete("networkpolicy", name, namespace=namespace)
    world_pods = {f"{o.namespace}/{o.name}" for o in _pods(exercises.world(exercise_id))}
    for ref in [r for r, p in lab.cluster.pods.items() if p.owner is None and r not in world_pods
                and not r.startswith("kube-system/")]:
        namespace, name = ref.split("/", 1)
        lab.delete("pod", name, namespace=namespace)
    build(lab, exercise_id, Design("reset", ()))


def _policies(text: str) -> list[Any]:
    from labkit.model.manifests import parse  # noqa: PLC0415
    from labkit.model.objects import NetworkPolicy  # noqa: PLC0415
    return [o for o in parse(text) if isinstance(o, NetworkPolicy)]


def _pods(text: str) -> list[Any]:
    from labkit.model.manifests import parse  # noqa: PLC0415
    from labkit.model.objects import Pod  # noqa: PLC0415
    return [o for o in parse(text) if isinstance(o, Pod)]
