"""The Cluster aggregate: namespaces, kubectl-apply semantics, replicas, IPAM, delete, label."""
from __future__ import annotations

import copy
import ipaddress
import re

import pytest

import labkit
from labkit.errors import ModelError, NotFound
from labkit.model.cluster import Cluster
from labkit.model.manifests import parse

SAFE = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' rand.SafeEncodeString alphabet


def ns(name, **labels):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(ref, labels=None, node=None, port=80):
    namespace, name = ref.split("/")
    spec = {"containers": [{"name": "app", "ports": [{"containerPort": port}]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                            "labels": labels or {"pod": name}}, "spec": spec}


def deployment(name="web", replicas=3, labels=None, image="labkit"):
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "x"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def service(name="web", namespace="x", cluster_ip=None, **spec):
    spec = {"selector": {"app": name}, "ports": [{"port": 80}], **spec}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def netpol(name="deny", namespace="x"):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"podSelector": {}}}


def apply(cluster, docs):
    return cluster.applied(parse(docs))


def build(docs, nodes=1):
    return apply(Cluster.new(nodes), docs)[0]


def replicas(cluster, deploy="x/web"):
    return sorted(r for r, p in cluster.pods.items() if p.owner == f"Deployment {deploy}")


# ------------------------------------------------------------------ namespaces
@pytest.mark.parametrize("name", ["default", "kube-system"])
def test_system_namespaces_exist_with_their_name_label(name):
    assert Cluster.new().namespaces[name].labels == {"kubernetes.io/metadata.name": name}


def test_cluster_dns_is_there_from_the_start():
    c = Cluster.new()
    assert c.service_ips["kube-system/kube-dns"] == "10.96.0.10"
    assert c.pod_ips["kube-system/coredns"] == "10.244.1.2"  # first address after the gateway .1
    assert c.user_pods() == []


@pytest.mark.parametrize("nodes", [0, 9, "2", True])
def test_node_count_is_validated(nodes):
    with pytest.raises(ModelError):
        Cluster.new(nodes)


def test_objects_need_their_namespace():
    with pytest.raises(ModelError) as exc:
        build([pod("nope/a")])
    assert str(exc.value).startswith("Pod nope/a: metadata.namespace: namespace 'nope' not found")


def test_namespace_in_the_same_apply_may_come_after_its_objects():
    c = build([pod("x/a"), ns("x")])
    assert "x/a" in c.pods


# ------------------------------------------------------------------ all or nothing
def test_failing_apply_changes_nothing_even_after_valid_documents():
    with labkit.Lab("t", backend="sim") as lab:
        lab.apply([ns("x"), pod("x/a")])
        before = copy.deepcopy(lab.cluster)
        ips = dict(lab.cluster.pod_ips)
        bad = [ns("y"), pod("y/b"), pod("x/c"), pod("x/d", labels={"tier": 1})]
        with pytest.raises(ModelError, match=r"^Pod x/d: metadata\.labels\.tier: "):
            lab.apply(bad)
        assert lab.cluster == before
        assert "y" not in lab.cluster.namespaces and lab.cluster.pod_ips == ips
        # addresses were not consumed: the next pod gets what it would have got without the failure
        lab.apply(pod("x/c"))
        assert lab.pod_ip("x/c") == build([ns("x"), pod("x/a"), pod("x/c")]).pod_ips["x/c"]


def test_failing_apply_in_the_cluster_stage_changes_nothing():
    with labkit.Lab("t", backend="sim") as lab:
        lab.apply([ns("x"), service("web", cluster_ip="10.96.5.5")])
        before = copy.deepcopy(lab.cluster)
        with pytest.raises(ModelError, match="already allocated"):
            lab.apply([pod("x/a"), netpol(), service("api", cluster_ip="10.96.5.5")])
        assert lab.cluster == before
        assert len(lab.history) == 1


# ------------------------------------------------------------------ kubectl apply
def test_apply_reports_created_unchanged_configured():
    c, changes = apply(Cluster.new(), [ns("x"), pod("x/a"), netpol()])
    assert [(ch.kind, ch.ref, ch.action) for ch in changes] == [
        ("Namespace", "x", "created"), ("Pod", "x/a", "created"), ("NetworkPolicy", "x/deny", "created")]
    c, changes = apply(c, [ns("x"), pod("x/a"), netpol()])
    assert {ch.action for ch in changes} == {"unchanged"}
    c2, changes = apply(c, [pod("x/a", labels={"pod": "a", "role": "db"})])
    assert [ch.action for ch in changes] == ["configured"]
    assert c2.pods["x/a"].labels == {"pod": "a", "role": "db"}
    assert c2.pod_ips["x/a"] == c.pod_ips["x/a"]  # the same pod keeps its address
    assert str(changes[0]) == "pod/x/a configured"


def test_system_objects_cannot_be_replaced():
    with pytest.raises(ModelError, match="cluster DNS"):
        build([pod("kube-system/coredns")])


# ------------------------------------------------------------------ Deployments
def test_replicas_are_named_like_kubernetes_and_carry_template_labels():
    c = build([ns("x"), deployment(replicas=3, labels={"app": "web", "tier": "front"})])
    names = replicas(c)
    assert len(names) == 3
    pattern = re.compile(rf"^x/web-([{SAFE}]{{10}})-([{SAFE}]{{5}})$")
    matches = [pattern.match(n) for n in names]
    assert all(matches), names
    assert len({m.group(1) for m in matches}) == 1  # one pod-template-hash
    assert len({m.group(2) for m in matches}) == 3
    for ref in names:
        assert c.pods[ref].labels == {"app": "web", "tier": "front"}


def test_replica_names_are_deterministic():
    assert replicas(build([ns("x"), deployment()])) == replicas(build([ns("x"), deployment()]))


def test_scaling_up_and_down_keeps_existing_replicas():
    c = build([ns("x"), deployment(replicas=2)])
    two = {r: c.pod_ips[r] for r in replicas(c)}
    c, _ = apply(c, [deployment(replicas=4)])
    four = {r: c.pod_ips[r] for r in replicas(c)}
    assert len(four) == 4 and two.items() <= four.items()
    c, _ = apply(c, [deployment(replicas=1)])
    (left,) = replicas(c)
    assert four[left] == c.pod_ips[left]
    c, _ = apply(c, [deployment(replicas=0)])
    assert replicas(c) == []


def test_template_change_replaces_replicas():
    c = build([ns("x"), deployment(replicas=2)])
    old = set(replicas(c))
    c, changes = apply(c, [deployment(replicas=2, image="nginx")])
    new = set(replicas(c))
    assert len(new) == 2 and not old & new
    assert changes[0].action == "configured"
    assert all(r not in c.pod_ips for r in old)


def test_unchanged_deployment_keeps_its_pods():
    c = build([ns("x"), deployment()])
    c2, changes = apply(c, [deployment()])
    assert changes[0].action == "unchanged" and c2.pod_ips == c.pod_ips


def test_replicas_cannot_be_replaced_by_a_pod_manifest():
    c = build([ns("x"), deployment(replicas=1)])
    (ref,) = replicas(c)
    with pytest.raises(ModelError, match="belongs to Deployment x/web"):
        apply(c, [pod(ref)])


def test_a_full_node_is_a_model_error_not_a_crash():
    with pytest.raises(ModelError, match="no free address"):
        build([ns("x"), deployment(replicas=300)])


# ------------------------------------------------------------------ IPAM
def test_pods_get_addresses_from_their_node_range_after_the_gateway():
    c = build([ns("x"), pod("x/a"), pod("x/b")])
    assert (c.pod_ips["x/a"], c.pod_ips["x/b"]) == ("10.244.1.3", "10.244.1.4")


def test_two_nodes_spread_pods_and_node_name_pins():
    c = build([ns("x"), pod("x/a"), pod("x/b"), pod("x/c"), pod("x/d", node="node-2"), pod("x/e", node="node-2")],
              nodes=2)
    assert [c.node_of(f"x/{n}") for n in "abcde"] == ["node-1", "node-2", "node-1", "node-2", "node-2"]
    for ref in c.user_pods():
        index = c.pod_nodes[ref]
        assert ipaddress.ip_address(c.pod_ips[ref]) in ipaddress.ip_network(f"10.244.{index}.0/24")
    assert c.pod_ips["x/b"] == "10.244.2.2"


@pytest.mark.parametrize("nodes, node", [(1, "node-2"), (2, "node-3"), (2, "worker")])
def test_unknown_node_name(nodes, node):
    with pytest.raises(ModelError) as exc:
        build([ns("x"), pod("x/a", node=node)], nodes=nodes)
    assert (exc.value.where, exc.value.path) == ("Pod x/a", "spec.nodeName")


def test_same_operations_give_same_addresses():
    docs = [ns("x"), ns("y"), pod("x/a"), pod("y/b"), deployment(), service(), service("api")]
    one, two = build(docs, nodes=2), build(docs, nodes=2)
    assert one.pod_ips == two.pod_ips and one.service_ips == two.service_ips
    assert len(set(one.pod_ips.values())) == len(one.pod_ips)


# ------------------------------------------------------------------ Service addresses
def test_service_ips_come_from_the_service_range():
    c = build([ns("x"), service("web"), service("api"), service("db")])
    ips = [c.service_ips[f"x/{n}"] for n in ("web", "api", "db")]
    assert len(set(ips)) == 3
    for ip in ips:
        assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/16")
        assert ip not in ("10.96.0.0", "10.96.0.1", "10.96.0.10")


def test_requested_cluster_ip_is_honoured_and_kept_on_reapply():
    c = build([ns("x"), service(cluster_ip="10.96.100.100")])
    assert c.service_ips["x/web"] == "10.96.100.100"
    c, _ = apply(c, [service()])  # omitting clusterIP keeps the allocated one
    assert c.service_ips["x/web"] == "10.96.100.100"


def test_allocated_ip_is_kept_when_the_service_is_reapplied():
    c = build([ns("x"), service()])
    ip = c.service_ips["x/web"]
    c, _ = apply(c, [service(ports=[{"port": 8080}])])
    assert c.service_ips["x/web"] == ip


@pytest.mark.parametrize("ip", ["10.97.0.5", "192.168.1.1", "10.96.0.0", "10.96.255.255", "fd00::1"])
def test_cluster_ip_outside_the_service_range(ip):
    with pytest.raises(ModelError) as exc:
        build([ns("x"), service(cluster_ip=ip)])
    assert (exc.value.where, exc.value.path) == ("Service x/web", "spec.clusterIP")


def test_duplicate_cluster_ip():
    with pytest.raises(ModelError, match="already allocated to Service kube-system/kube-dns"):
        build([ns("x"), service(cluster_ip="10.96.0.10")])


def test_cluster_ip_is_immutable():
    c = build([ns("x"), service(cluster_ip="10.96.1.1")])
    with pytest.raises(ModelError, match="immutable"):
        apply(c, [service(cluster_ip="10.96.1.2")])
    with pytest.raises(ModelError, match="immutable"):
        apply(c, [service(cluster_ip="None")])


def test_headless_service_has_no_cluster_ip():
    c = build([ns("x"), service(cluster_ip="None")])
    assert c.service_ips["x/web"] is None


def test_node_port_is_unique_across_services():
    np = dict(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    with pytest.raises(ModelError, match="30080") as exc:
        build([ns("x"), service("web", **np), service("api", **np)])
    assert exc.value.path == "spec.ports[0].nodePort"


# ------------------------------------------------------------------ delete
def world():
    return build([ns("x"), ns("y"), pod("x/a"), pod("y/b"), deployment(replicas=2), service(), netpol(),
                  netpol(namespace="y")])


@pytest.mark.parametrize("kind, name, namespace, gone", [
    ("pod", "a", "x", ("pods", "x/a")),
    ("svc", "web", "x", ("services", "x/web")),
    ("netpol", "deny", "x", ("policies", "x/deny")),
    ("Deployment", "web", "x", ("deployments", "x/web")),
])
def test_delete_one_object(kind, name, namespace, gone):
    c = world()
    new, changes = c.deleted(kind, name, namespace)
    store, ref = gone
    assert ref in getattr(c, store) and ref not in getattr(new, store)
    assert changes[0].action == "deleted"


def test_deleting_a_pod_frees_its_address_and_a_service_its_ip():
    c = world()
    new, _ = c.deleted("pod", "a", "x")
    assert "x/a" not in new.pod_ips and "x/a" not in new.pod_nodes
    new, _ = c.deleted("service", "web", "x")
    assert "x/web" not in new.service_ips


def test_deleting_a_deployment_deletes_its_replicas():
    c = world()
    new, changes = c.deleted("deployment", "web", "x")
    assert replicas(new) == []
    assert sorted(ch.ref for ch in changes if ch.kind == "Pod") == replicas(c)


def test_deleting_a_namespace_cascades():
    c = world()
    new, _ = c.deleted("namespace", "x")
    assert "x" not in new.namespaces
    assert not [r for store in (new.pods, new.services, new.policies, new.deployments) for r in store
                if r.startswith("x/")]
    assert "y/b" in new.pods and "y/deny" in new.policies
    assert new.pod_ips["y/b"] == c.pod_ips["y/b"]


@pytest.mark.parametrize("kind, name, namespace", [
    ("namespace", "default", ""), ("namespace", "kube-system", ""),
    ("pod", "coredns", "kube-system"), ("service", "kube-dns", "kube-system"),
])
def test_system_objects_cannot_be_deleted(kind, name, namespace):
    with pytest.raises(ModelError) as exc:
        world().deleted(kind, name, namespace)
    assert not isinstance(exc.value, NotFound)


@pytest.mark.parametrize("kind, name, namespace", [
    ("pod", "zz", "x"), ("netpol", "deny", "default"), ("namespace", "zz", ""), ("svc", "web", "y")])
def test_deleting_something_missing_is_not_found(kind, name, namespace):
    with pytest.raises(NotFound):
        world().deleted(kind, name, namespace)


def test_delete_does_not_touch_the_original():
    c = world()
    snapshot = copy.deepcopy(c)
    c.deleted("namespace", "x")
    assert c == snapshot


# ------------------------------------------------------------------ label
def test_label_merges_and_none_removes():
    c = build([ns("x"), pod("x/a", labels={"pod": "a", "role": "web"})])
    new, changes = c.labeled("pod", "x/a", {"tier": "db", "role": None, "absent": None})
    assert new.pods["x/a"].labels == {"pod": "a", "tier": "db"}
    assert c.pods["x/a"].labels == {"pod": "a", "role": "web"}  # the original is untouched
    assert [(ch.kind, ch.ref, ch.action) for ch in changes] == [("Pod", "x/a", "labeled")]


def test_label_namespace_keeps_its_name_label():
    c = build([ns("x", team="a")])
    new, _ = c.labeled("ns", "x", {"team": None, "env": "prod"})
    assert new.namespaces["x"].labels == {"kubernetes.io/metadata.name": "x", "env": "prod"}
    for change in ({"kubernetes.io/metadata.name": "y"}, {"kubernetes.io/metadata.name": None}):
        with pytest.raises(ModelError, match="metadata.name"):
            c.labeled("namespace", "x", change)


@pytest.mark.parametrize("labels", [{"-bad": "v"}, {"ok": "bad value"}, {"ok": 1}, ["a"]])
def test_label_validates_keys_and_values(labels):
    c = build([ns("x"), pod("x/a")])
    with pytest.raises(ModelError):
        c.labeled("pod", "x/a", labels)


def test_label_only_pods_and_namespaces():
    with pytest.raises(ModelError, match="pods and namespaces"):
        world().labeled("svc", "x/web", {"a": "b"})


def test_label_default_namespace_pod_ref():
    c = build([pod("default/solo")])
    new, _ = c.labeled("pod", "solo", {"a": "b"})
    assert new.pods["default/solo"].labels["a"] == "b"


def test_reapply_keeps_labels_added_since_like_kubectl_apply():
    """kubectl apply merges three ways: labels added with `kubectl label` survive a
    re-apply of the unchanged manifest; the manifest's own keys take its values."""
    manifest = [ns("x", team="a"), pod("x/a", labels={"pod": "a", "role": "web"})]
    c = build(manifest)
    c, _ = c.labeled("pod", "x/a", {"tier": "db", "role": "cache"})
    c, _ = c.labeled("namespace", "x", {"env": "prod"})
    ip = c.pod_ips["x/a"]
    new, changes = apply(c, manifest)
    assert new.pods["x/a"].labels == {"pod": "a", "role": "web", "tier": "db"}
    assert new.namespaces["x"].labels == {"kubernetes.io/metadata.name": "x", "team": "a", "env": "prod"}
    assert new.pod_ips["x/a"] == ip  # labels only: the same pod
    assert {(ch.ref, ch.action) for ch in changes} == {("x", "unchanged"), ("x/a", "configured")}
    again, changes = apply(new, manifest)
    assert {ch.action for ch in changes} == {"unchanged"}


def test_reapply_drops_only_labels_the_last_apply_set():
    c = build([ns("x"), pod("x/a", labels={"pod": "a", "role": "web"})])
    c, _ = c.labeled("pod", "x/a", {"tier": "db"})
    new, _ = apply(c, [ns("x"), pod("x/a", labels={"pod": "a"})])  # role removed from the file
    assert new.pods["x/a"].labels == {"pod": "a", "tier": "db"}
    after_delete, _ = new.deleted("pod", "a", "x")
    fresh, _ = apply(after_delete, [pod("x/a", labels={"pod": "a"})])  # a new pod: nothing kept
    assert fresh.pods["x/a"].labels == {"pod": "a"}


def test_a_deleted_replica_is_replaced_with_a_new_name_and_address():
    """Like a ReplicaSet: deleting one pod of a Deployment brings a new one at once."""
    c = world()
    before = replicas(c)
    gone = before[0]
    new, changes = c.deleted("pod", gone.split("/")[1], "x")
    after = replicas(new)
    assert len(after) == len(before) and gone not in after
    (added,) = set(after) - set(before)
    assert new.pod_ips[added] not in c.pod_ips.values()
    assert [(ch.kind, ch.ref, ch.action) for ch in changes] == [
        ("Pod", gone, "deleted"), ("Pod", added, "created")]
    assert new.pods[added].labels == c.pods[gone].labels
    # the name is never given out again, also when the replacement goes too
    newer, _ = new.deleted("pod", added.split("/")[1], "x")
    assert gone not in replicas(newer) and added not in replicas(newer)
    assert len(replicas(newer)) == len(before)


def test_scaling_to_zero_or_deleting_the_deployment_replaces_nothing():
    c = world()
    new, changes = apply(c, [deployment(replicas=0)])
    assert replicas(new) == [] and new.deployments["x/web"].replicas == 0
    new, changes = c.deleted("deployment", "web", "x")
    assert replicas(new) == [] and {ch.action for ch in changes} == {"deleted"}
    new, changes = c.deleted("namespace", "x")
    assert {ch.action for ch in changes} == {"deleted"}


# ------------------------------------------------------------------ lookups
def test_not_found_suggests_the_pod_in_another_namespace():
    c = build([ns("x"), ns("y"), pod("x/a"), pod("y/a")])
    with pytest.raises(NotFound, match=r"pod 'default/a' not found; did you mean x/a, y/a\?"):
        c.pod("a")
    with pytest.raises(NotFound) as exc:
        c.pod("x/zz")
    assert "did you mean" not in str(exc.value)


@pytest.mark.parametrize("ref", ["", "a/b/c", None, 3])
def test_bad_pod_refs(ref):
    with pytest.raises(ModelError):
        Cluster.new().pod(ref)


def test_nodeport_without_a_number_gets_one_and_keeps_it():
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "w"},
           "spec": {"type": "NodePort", "selector": {"a": "b"},
                    "ports": [{"port": 80, "name": "h"}, {"port": 81, "name": "i", "nodePort": 30000}]}}
    c, _ = Cluster.new().applied(parse(doc))
    ports = {p.port: p.node_port for p in c.services["default/w"].ports}
    assert ports == {80: 30001, 81: 30000}, "allocated from 30000-32767, skipping the one in use"
    c, changes = c.applied(parse(doc))
    assert [ch.action for ch in changes] == ["unchanged"]
    assert {p.port: p.node_port for p in c.services["default/w"].ports} == ports
    other = {**doc, "metadata": {"name": "v"}, "spec": {**doc["spec"], "ports": [{"port": 80}]}}
    c, _ = c.applied(parse(other))
    assert c.services["default/v"].ports[0].node_port == 30002


def test_deleting_a_replica_leaves_the_labels_of_the_others_alone():
    c = world()
    kept, gone = replicas(c)[:2]
    c, _ = c.labeled("pod", kept, {"app": "quarantine"})
    new, _ = c.deleted("pod", gone.split("/")[1], "x")
    assert new.pods[kept].labels["app"] == "quarantine"
    again, changes = apply(new, [deployment(replicas=2)])  # an unchanged Deployment touches no pod
    assert again.pods[kept].labels["app"] == "quarantine"
