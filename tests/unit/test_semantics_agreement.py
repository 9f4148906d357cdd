"""The fast path (``reach.matrix_rows``) and the explained path (``oracle.explain``) agree.

Hypothesis builds small random clusters (2-3 namespaces x 2-3 pods with random labels and
ports) and random NetworkPolicies covering selectors, matchExpressions, ports by number and
name, endPort, ipBlock with except and policyTypes; then every ordered pod pair must get
the same verdict from both paths.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.model.cluster import Cluster
from labkit.model.manifests import parse
from labkit.semantics.oracle import explain
from labkit.semantics.reach import matrix_rows

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
KEYS, VALUES = ("app", "tier"), ("a", "b")  # a small vocabulary, so selectors often match
COMBOS = [(80, "TCP"), (8080, "TCP"), (80, "UDP"), (81, "TCP")]
# Each pod serves a random subset of these; "http" names a different number on different pods.
PORT_SETS = [
    [{"containerPort": 80, "name": "http"}],
    [{"containerPort": 8080, "name": "http"}, {"containerPort": 80}],
    [{"containerPort": 80, "name": "web"}, {"containerPort": 80, "protocol": "UDP", "name": "http"}],
    [{"containerPort": 81}, {"containerPort": 8080, "name": "alt"}],
    [{"containerPort": 80}, {"containerPort": 81, "name": "http"}, {"containerPort": 80, "protocol": "UDP"}],
]
CIDRS = [("10.244.0.0/16", ["10.244.1.0/29"]), ("10.244.1.0/29", ["10.244.1.4/30"]), ("10.244.1.0/24", []),
         ("0.0.0.0/0", ["10.244.1.0/30", "10.244.2.4/32"]), ("10.244.1.4/31", []), ("10.244.2.3/32", []),
         ("192.168.0.0/16", [])]

labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)


@st.composite
def expressions(draw):
    key = draw(st.sampled_from(KEYS + ("kubernetes.io/metadata.name",)))
    op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    expr = {"key": key, "operator": op}
    if op in ("In", "NotIn"):
        expr["values"] = draw(st.lists(st.sampled_from(VALUES + ("x", "y")), min_size=1, max_size=2, unique=True))
    return expr


@st.composite
def selectors(draw):
    sel = {}
    if draw(st.booleans()):
        sel["matchLabels"] = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=1))
    if draw(st.booleans()):
        sel["matchExpressions"] = draw(st.lists(expressions(), max_size=2))
    return sel


@st.composite
def peers(draw):
    kind = draw(st.sampled_from(["ip", "both", "pod", "ns", "ip"]))
    if kind == "ip":
        cidr, except_ = draw(st.sampled_from(CIDRS))
        block = {"cidr": cidr} | ({"except": except_} if except_ else {})
        return {"ipBlock": block}
    peer = {}
    if kind in ("pod", "both"):
        peer["podSelector"] = draw(selectors())
    if kind in ("ns", "both"):
        peer["namespaceSelector"] = draw(selectors())
    return peer


policy_ports = st.one_of(
    st.builds(lambda p, proto: {"port": p, "protocol": proto}, st.sampled_from([80, 81, 8080]),
              st.sampled_from(["TCP", "UDP"])),
    st.builds(lambda n: {"port": n}, st.sampled_from(["http", "web", "alt", "nope"])),
    st.builds(lambda n: {"port": n, "protocol": "UDP"}, st.sampled_from(["http", "web"])),
    st.builds(lambda lo, hi: {"port": lo, "endPort": hi}, st.sampled_from([79, 80, 81]),
              st.sampled_from([81, 8079, 8080, 9000])),
    st.just({"protocol": "UDP"}),
    st.just({}),
)


@st.composite
def rules(draw, peers_key):
    rule = {}
    if draw(st.integers(0, 3)):  # mostly with peers, sometimes none (= everyone)
        rule[peers_key] = draw(st.lists(peers(), min_size=1, max_size=3))
    if draw(st.booleans()):
        rule["ports"] = draw(st.lists(policy_ports, min_size=1, max_size=3))
    return rule


@st.composite
def policies(draw, index, namespaces):
    spec = {"podSelector": draw(selectors())}
    for direction, key in (("ingress", "from"), ("egress", "to")):
        choice = draw(st.sampled_from(["rules", "absent", "empty", "rules"]))
        if choice == "empty":
            spec[direction] = []
        elif choice == "rules":
            spec[direction] = draw(st.lists(rules(key), min_size=1, max_size=3))
    types = draw(st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"], ["Egress", "Ingress"]]))
    if types is not None:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"p{index}", "namespace": draw(st.sampled_from(namespaces))}, "spec": spec}


@st.composite
def clusters(draw):
    namespaces = list(NAMESPACES[:draw(st.integers(2, 3))])
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": draw(labels)}}
            for n in namespaces]
    for n in namespaces:
        for p in POD_NAMES[:draw(st.integers(2, 3))]:
            docs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": p, "namespace": n, "labels": draw(labels)},
                         "spec": {"containers": [{"name": "app", "ports": draw(st.sampled_from(PORT_SETS))}]}})
    count = draw(st.integers(1, 4))
    docs += [draw(policies(i, namespaces)) for i in range(count)]
    nodes = draw(st.integers(1, 2))
    return Cluster.new(nodes).applied(parse(docs))[0]


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(clusters())
def test_matrix_rows_agree_with_explain_for_every_pair(cluster):
    pods = cluster.user_pods()
    for port, protocol in COMBOS:
        rows = matrix_rows(cluster, pods, port, protocol)
        for i, src in enumerate(pods):
            for j, dst in enumerate(pods):
                fast = bool(rows[i] >> j & 1)
                ex = explain(cluster, src, dst, port, protocol)
                assert fast == ex.allowed, (f"{src} -> {dst} {port}/{protocol}: matrix_rows says {fast}, "
                                            f"explain says\n{ex}")


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_matrix_rows_for_a_subset_of_pods_agree_with_the_full_matrix(cluster):
    pods = cluster.user_pods()
    subset = pods[::2]
    full = matrix_rows(cluster, pods, 80, "TCP")
    part = matrix_rows(cluster, subset, 80, "TCP")
    for i, src in enumerate(subset):
        for j, dst in enumerate(subset):
            assert bool(part[i] >> j & 1) == bool(full[pods.index(src)] >> pods.index(dst) & 1)
