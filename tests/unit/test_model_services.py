"""The Service and pod-DNS fields of issue 15 and hand-written EndpointSlices: each one is
parsed into the model or refused with its field path, with the API server's rules."""
from __future__ import annotations

import pytest

from labkit.errors import ModelError
from labkit.model.cluster import Cluster
from labkit.model.manifests import parse
from labkit.model.objects import DNSConfig, SliceEndpoint, SlicePort


def service(spec, name="web", namespace="default"):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def pod(**spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app"}], **spec}}


def eps(endpoints, ports=({"port": 80},), name="web-1", service_name="web", **extra):
    labels = {"kubernetes.io/service-name": service_name} if service_name else {}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": labels}, "addressType": "IPv4",
            "endpoints": list(endpoints), "ports": list(ports), **extra}


def one(doc):
    (obj,) = parse(doc)
    return obj


def error(doc) -> ModelError:
    with pytest.raises(ModelError) as info:
        parse(doc)
    return info.value


PORT = [{"port": 80}]


# ------------------------------------------------------------------- Service fields
def test_every_new_service_field_is_read():
    svc = one(service({"selector": {"app": "web"}, "ports": PORT, "type": "NodePort",
                       "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 2}},
                       "publishNotReadyAddresses": True, "internalTrafficPolicy": "Local",
                       "externalTrafficPolicy": "Local", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}))
    assert (svc.affinity_timeout, svc.publish_not_ready) == (2, True)
    assert (svc.internal_traffic_policy, svc.external_traffic_policy) == ("Local", "Local")


def test_defaults_are_kubernetes_defaults():
    svc = one(service({"selector": {"app": "web"}, "ports": PORT, "sessionAffinity": "ClientIP"}))
    assert (svc.affinity_timeout, svc.publish_not_ready) == (10800, False)
    assert (svc.internal_traffic_policy, svc.external_traffic_policy, svc.external_name) == ("Cluster", "Cluster", None)


@pytest.mark.parametrize("seconds", [0, 86401, -5])
def test_affinity_timeout_within_1_to_86400(seconds):
    err = error(service({"ports": PORT, "sessionAffinity": "ClientIP",
                         "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": seconds}}}))
    assert err.path == "spec.sessionAffinityConfig.clientIP.timeoutSeconds" and "86400" in str(err)


def test_affinity_timeout_needs_client_ip_affinity():
    for config in ({"clientIP": {"timeoutSeconds": 5}}, {"clientIP": {}}):
        err = error(service({"ports": PORT, "sessionAffinityConfig": config}))
        assert err.path == "spec.sessionAffinityConfig" and "ClientIP" in str(err)


@pytest.mark.parametrize("spec,path", [
    ({"clusterIP": "None", "internalTrafficPolicy": "Local"}, "spec.internalTrafficPolicy"),
    ({"clusterIP": "None", "sessionAffinity": "ClientIP"}, "spec.sessionAffinity"),
    ({"type": "ExternalName", "externalName": "a.b", "ports": PORT}, "spec.ports"),
    ({"type": "ExternalName", "externalName": "a.b", "publishNotReadyAddresses": True}, "spec.publishNotReadyAddresses"),
])
def test_fields_that_would_do_nothing_are_refused(spec, path):
    err = error(service({"ports": PORT, **spec} if "ports" not in spec and spec.get("type") != "ExternalName" else spec))
    assert err.path == path and "remove" in str(err)


@pytest.mark.parametrize("field,value", [("internalTrafficPolicy", "Nearby"), ("externalTrafficPolicy", "local"),
                                         ("publishNotReadyAddresses", "yes")])
def test_bad_values_name_their_field(field, value):
    assert error(service({"type": "NodePort", "ports": PORT, field: value})).path == f"spec.{field}"


def test_external_traffic_policy_only_for_node_ports():
    err = error(service({"ports": PORT, "externalTrafficPolicy": "Local"}))
    assert err.path == "spec.externalTrafficPolicy" and "NodePort" in str(err)


@pytest.mark.parametrize("spec,path", [
    ({"ipFamilies": ["IPv6"]}, "spec.ipFamilies[0]"),
    ({"ipFamilies": ["IPv4", "IPv6"]}, "spec.ipFamilies[1]"),
    ({"ipFamilyPolicy": "RequireDualStack"}, "spec.ipFamilyPolicy"),
    ({"clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.6"]}, "spec.clusterIPs[0]"),
    ({"clusterIPs": ["10.96.5.5", "fd00::5"]}, "spec.clusterIPs"),
    ({"externalIPs": ["1.2.3.4"]}, "spec.externalIPs"),
    ({"loadBalancerIP": "1.2.3.4"}, "spec.loadBalancerIP"),
    ({"trafficDistribution": "PreferClose"}, "spec.trafficDistribution"),
    ({"externalName": "example.com"}, "spec.externalName"),
])
def test_refused_service_fields(spec, path):
    assert error(service({"ports": PORT, **spec})).path == path


def test_cluster_ips_alone_sets_the_cluster_ip():
    assert one(service({"ports": PORT, "clusterIPs": ["10.96.7.7"]})).cluster_ip == "10.96.7.7"


def test_app_protocol_is_kept():
    assert one(service({"ports": [{"port": 80, "appProtocol": "http"}]})).ports[0].app_protocol == "http"


# ------------------------------------------------------------------- ExternalName
def test_external_name_is_a_dns_alias():
    svc = one(service({"type": "ExternalName", "externalName": "Web.Other.svc.cluster.local."}))
    assert svc.external and svc.external_name == "web.other.svc.cluster.local" and svc.selector is None


@pytest.mark.parametrize("spec,path", [
    ({"type": "ExternalName"}, "spec.externalName"),
    ({"type": "ExternalName", "externalName": "not a name"}, "spec.externalName"),
    ({"type": "ExternalName", "externalName": "db.example.com", "selector": {"app": "db"}}, "spec.selector"),
    ({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "10.96.3.3"}, "spec.clusterIP"),
    ({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "None"}, "spec.clusterIP"),
    ({"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "ClientIP"}, "spec.sessionAffinity"),
    ({"type": "ExternalName", "externalName": "db.example.com", "externalTrafficPolicy": "Local"},
     "spec.externalTrafficPolicy"),
])
def test_external_name_rules(spec, path):
    assert error(service(spec)).path == path


def test_changing_to_and_from_external_name_releases_and_allocates_the_cluster_ip():
    c = Cluster.new()
    c, _ = c.applied(parse(service({"selector": {"app": "web"}, "ports": PORT})))
    ip = c.service_ips["default/web"]
    c, changes = c.applied(parse(service({"type": "ExternalName", "externalName": "db.example.com"})))
    assert c.service_ips["default/web"] is None and str(changes[0]) == "service/default/web configured"
    c, _ = c.applied(parse(service({"selector": {"app": "web"}, "ports": PORT})))
    assert c.service_ips["default/web"] and c.service_ips["default/web"] != ip  # a new address, as a new Service


# ------------------------------------------------------------------- the kubernetes Service
def test_every_lab_has_the_kubernetes_service_at_the_first_service_address():
    c = Cluster.new()
    svc = c.services["default/kubernetes"]
    assert c.service_ips["default/kubernetes"] == "10.96.0.1"
    assert svc.selector is None and [(p.name, p.port, p.target) for p in svc.ports] == [("https", 443, 6443)]
    for op in (lambda: c.deleted("Service", "kubernetes"),
               lambda: c.applied(parse(service({"ports": PORT}, name="kubernetes")))):
        with pytest.raises(ModelError, match="every cluster"):
            op()


def test_allocation_never_gives_out_the_kubernetes_or_dns_address():
    c = Cluster.new()
    c, _ = c.applied(parse([service({"ports": PORT}, name=f"s{i}") for i in range(3)]))
    assert not {"10.96.0.1", "10.96.0.10"} & {c.service_ips[f"default/s{i}"] for i in range(3)}


# ------------------------------------------------------------------- pod DNS fields
def test_pod_dns_fields_are_read():
    p = one(pod(hostname="db-0", subdomain="db", dnsPolicy="None",
                dnsConfig={"nameservers": ["10.96.0.10"], "searches": ["db.default.svc.cluster.local"],
                           "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}))
    assert (p.spec.hostname, p.spec.subdomain, p.spec.dns_policy) == ("db-0", "db", "None")
    assert p.spec.dns_config == DNSConfig(("10.96.0.10",), ("db.default.svc.cluster.local",),
                                          (("ndots", "2"), ("edns0", None)))


def test_cluster_first_with_host_net_is_cluster_first_without_host_network():
    assert one(pod(dnsPolicy="ClusterFirstWithHostNet")).spec.dns_policy == "ClusterFirst"
    assert one(pod()).spec.dns_policy == "ClusterFirst" and one(pod()).spec.dns_config is None


@pytest.mark.parametrize("spec,path", [
    ({"dnsPolicy": "None"}, "spec.dnsConfig.nameservers"),
    ({"dnsPolicy": "None", "dnsConfig": {"searches": ["a.b"]}}, "spec.dnsConfig.nameservers"),
    ({"dnsPolicy": "Cluster"}, "spec.dnsPolicy"),
    ({"dnsConfig": {"nameservers": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]}}, "spec.dnsConfig.nameservers"),
    ({"dnsConfig": {"nameservers": ["dns.example"]}}, "spec.dnsConfig.nameservers[0]"),
    ({"dnsConfig": {"searches": ["Not_A_Domain"]}}, "spec.dnsConfig.searches[0]"),
    ({"dnsConfig": {"searches": [f"d{i}.example" for i in range(33)]}}, "spec.dnsConfig.searches"),
    ({"dnsConfig": {"options": [{"value": "2"}]}}, "spec.dnsConfig.options[0].name"),
    ({"dnsConfig": {"options": [{"name": "ndots", "value": "many"}]}}, "spec.dnsConfig.options[0].value"),
    ({"dnsConfig": {"resolvers": []}}, "spec.dnsConfig.resolvers"),
    ({"hostname": "Db_0"}, "spec.hostname"),
    ({"subdomain": "a.b"}, "spec.subdomain"),
    ({"enableServiceLinks": True}, "spec.enableServiceLinks"),
    ({"dnsConfig": {"nameservers": ["8.8.8.8"]}}, "spec.dnsConfig.nameservers[0]"),
])
def test_pod_dns_rules(spec, path):
    assert error(pod(**spec)).path == path


def test_enable_service_links_false_is_what_labkit_does():
    assert one(pod(enableServiceLinks=False)).spec.dns_policy == "ClusterFirst"


# ------------------------------------------------------------------- EndpointSlices
def test_an_endpoint_slice_is_read():
    s = one(eps([{"addresses": ["10.244.1.7"], "conditions": {"ready": False}, "hostname": "db-0",
                  "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": "db"}},
                 {"addresses": ["203.0.113.10"]}],
                ports=[{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]))
    assert s.service == "default/web"
    assert s.endpoints == (SliceEndpoint("10.244.1.7", False, "db-0", "node-1", "default/db"),
                           SliceEndpoint("203.0.113.10"))
    assert s.ports == (SlicePort(8080, "TCP", "http", "http"),)


@pytest.mark.parametrize("address", ["8.8.8.8", "192.168.1.1", "127.0.0.1", "169.254.1.1", "10.96.0.10", "0.0.0.0"])
def test_endpoint_addresses_must_be_the_labs_own(address):
    err = error(eps([{"addresses": [address]}]))
    assert err.path == "endpoints[0].addresses[0]"


@pytest.mark.parametrize("doc,path", [
    (eps([{"addresses": ["10.244.1.7", "10.244.1.8"]}]), "endpoints[0].addresses"),
    (eps([{"addresses": []}]), "endpoints[0].addresses"),
    (eps([], addressType="IPv6"), "addressType"),
    (eps([], addressType="FQDN"), "addressType"),
    (eps([], ports=[{"name": "http"}]), "ports[0].port"),
    (eps([], ports=[{"port": 80, "protocol": "ICMP"}]), "ports[0].protocol"),
    (eps([{"addresses": ["10.244.1.7"], "zone": "a"}]), "endpoints[0].zone"),
    (eps([{"addresses": ["10.244.1.7"], "conditions": {"terminating": True}}]), "endpoints[0].conditions.terminating"),
    (eps([{"addresses": ["10.244.1.7"], "targetRef": {"kind": "Node", "name": "n"}}]), "endpoints[0].targetRef.kind"),
    (eps([], service_name="Bad_Name"), "metadata.labels.kubernetes.io/service-name"),
])
def test_endpoint_slice_rules(doc, path):
    assert error(doc).path == path


def test_a_slice_names_an_existing_node_and_goes_with_its_namespace():
    c = Cluster.new(nodes=2)
    with pytest.raises(ModelError) as info:
        c.applied(parse(eps([{"addresses": ["10.244.1.7"], "nodeName": "node-9"}])))
    assert info.value.path.endswith("endpoints[0].nodeName")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    doc = eps([{"addresses": ["10.244.1.7"], "nodeName": "node-2"}])
    doc["metadata"]["namespace"] = "x"
    c, changes = c.applied(parse([ns, doc]))
    assert "x/web-1" in c.slices and str(changes[-1]) == "endpointslice/x/web-1 created"
    c, changes = c.deleted("Namespace", "x")
    assert not c.slices and "endpointslice/x/web-1 deleted" in [str(ch) for ch in changes]
