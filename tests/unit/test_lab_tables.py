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
    rows = {r[0]: r for r in store.get("svc", "store").rows}
    assert rows["store/catalog"][3] == "app=catalgo"
    assert rows["store/orders"][4] == "80->80/TCP" and rows["store/catalog"][4] == "80->http/TCP"
    assert rows["store/catalog"][2] == store.service_ip("store/catalog")


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
