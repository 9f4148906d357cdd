"""``lab.get`` (kubectl get as a value) and ``lab.probe_many`` (several probes at once), on sim."""
from __future__ import annotations

import pytest

import labkit
from labkit import ModelError, exercises


@pytest.fixture
def store():
    with labkit.Lab("tables", backend="sim") as lab:
        lab.apply(exercises.world("03-debug-service"))
        yield lab


def test_get_pods_shows_readiness_ips_ports_and_labels(store):
    table = store.get("pods", "store")
    rows = {r[0]: r for r in table.rows}
    assert table.header == ("POD", "READY", "IP", "NODE", "PORTS", "LABELS")
    assert rows["store/client"][1:3] == ("yes", store.pod_ip("store/client"))
    search = [r for ref, r in rows.items() if ref.startswith("store/search-")]
    assert len(search) == 2 and all(r[1] == "no" for r in search), "the search pods fail their readinessProbe"
    assert all("app=search" in r[5] and "tier=backend" in r[5] and "8080/TCP(http)" in r[4] for r in search)
    text = repr(table)
    assert text.splitlines()[0].startswith("POD") and "store/client" in text
    assert "<table class='labkit-get'>" in table._repr_html_()


def test_get_services_shows_the_selector_and_the_target_port(store):
    table = store.get("svc", "store")
    assert table.header == ("SERVICE", "TYPE", "CLUSTER-IP", "EXTERNAL-NAME", "SELECTOR", "PORT->TARGET")
    rows = {r[0]: r for r in table.rows}
    assert rows["store/catalog"][4] == "app=catalgo" and rows["store/catalog"][3] == "<none>"
    assert rows["store/orders"][5] == "80->80/TCP" and rows["store/catalog"][5] == "80->http/TCP"
    assert rows["store/catalog"][2] == store.service_ip("store/catalog")


def test_get_services_shows_the_kubernetes_service_and_external_names(store):
    store.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "alias", "namespace": "store"},
                 "spec": {"type": "ExternalName", "externalName": "catalog.store.svc.cluster.local"}})
    try:
        rows = {r[0]: r for r in store.get("services").rows}  # every namespace but kube-system, like kubectl -A
        assert rows["default/kubernetes"][1:4] == ("ClusterIP", "10.96.0.1", "<none>")
        assert rows["store/alias"][1:4] == ("ExternalName", "None", "catalog.store.svc.cluster.local")
    finally:
        store.delete("service", "alias", "store")


def test_get_policies_and_bad_input(store):
    assert repr(store.get("networkpolicies")) == "No resources found."
    store.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "deny", "namespace": "store"}, "spec": {"podSelector": {}}})
    assert store.get("netpol", "store").rows == (("store/deny", "{} (every pod)", "Ingress"),)
    with pytest.raises(ModelError, match="choose one of pods, services, networkpolicies"):
        store.get("deployments")
    with pytest.raises(ModelError, match="no such namespace"):
        store.get("pods", "nope")


def test_probe_many_gives_one_result_per_probe_in_order(store):
    results = store.probe_many([("store/client", "store/" + store.get("pods", "store").rows[0][0].split("/")[1], 8080,
                                 "TCP"), ("store/client", "catalog", 80, "TCP"), ("internet", "198.18.0.1", 9, "UDP")])
    assert [r.ok for r in results] == [True, False, False]
    assert results[1].src == "store/client" and results[1].port == 80 and results[2].protocol == "UDP"
    assert store.probe_many([]) == []
    with pytest.raises(ModelError, match=r"probes\[0\]"):
        store.probe_many([("store/client", "catalog")])
    with pytest.raises(labkit.LabkitError):
        store.probe_many([("store/client", "catalog", 0, "TCP")])


def test_sample_tallies_who_answered_and_failures(store):
    answered = store.sample("store/client", "web", port=80, count=30)
    assert len(answered) == 30 and isinstance(answered, list)
    tally = answered.tally()
    catalog = {ref for ref in store.pods if ref.startswith("store/catalog-")}
    assert set(tally) == catalog and sum(tally.values()) == 30
    assert repr(answered).startswith("30 attempts store/client -> web:80/TCP: store/catalog-")
    refused = store.sample("store/client", "catalog", port=80, count=3)
    assert refused.tally() == {"failed: connection refused": 3}


def test_wait_for_endpoints_returns_once_ready_or_at_the_timeout(store):
    import time  # noqa: PLC0415
    started = time.monotonic()
    still = store.wait_for_endpoints("store/search", ready=2, timeout=1.0)
    assert len(still.ready) == 0 and 0.9 <= time.monotonic() - started < 5, "nothing listens on 8081: never ready"
    store.apply(exercises.solution("03-debug-service"))
    ready = store.wait_for_endpoints("store/search", ready=2, timeout=15)
    assert len(ready.ready) == 2
    ips = [e.ip for e in ready]
    assert repr(ready).splitlines()[0] == f"Endpoints store/search: {','.join(f'{ip}:8080' for ip in sorted(ips, key=lambda i: tuple(map(int, i.split('.')))))}"


def test_delete_takes_a_pod_ref_and_the_repr_counts_only_the_learners_objects(store):
    assert repr(store).splitlines()[-1].endswith("7 pods, 4 Services, 0 NetworkPolicies>")
    assert str(store.delete("pod", "store/client")) == "pod/store/client deleted"
    assert "store/client" not in store.pods
    assert repr(store).splitlines()[-1].endswith("6 pods, 4 Services, 0 NetworkPolicies>")
    with labkit.Lab("tables-empty", backend="sim") as empty:
        assert repr(empty).splitlines()[-1].endswith("0 pods, 0 Services, 0 NetworkPolicies>")


def test_lookup_resolves_as_the_pod_does():
    with labkit.Lab("tables-dns", backend="sim") as lab:
        lab.apply(exercises.world("03-debug-service"))
        found = lab.lookup("store/client", "web")
        assert found.ok and found.addresses == (lab.service_ip("store/web"),)
        assert repr(found).startswith(f"web from store/client: {lab.service_ip('store/web')} (nslookup exit 0)")
        missing = lab.lookup("store/client", "nope")
        assert not missing.ok and missing.addresses == () and "no address" in repr(missing)
        assert "<pre>" in found._repr_html_()
