"""Pods, Deployments, Services, names and labels: validation as the API server does it."""
from __future__ import annotations

import pytest

from labkit.errors import ModelError
from labkit.model.manifests import parse
from labkit.model.objects import ContainerPort, ServicePort


def pod(name="a", namespace="x", labels=None, containers=None, **spec):
    meta = {"name": name, "namespace": namespace} | ({"labels": labels} if labels is not None else {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": containers or [{"name": "app", "ports": [{"containerPort": 80}]}], **spec}}


def port_pod(**port):
    return pod(containers=[{"name": "app", "ports": [port]}])


def service(spec, name="web", namespace="x"):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def deployment(selector, template_labels, replicas=2, name="web"):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "x"},
            "spec": {"replicas": replicas, "selector": selector,
                     "template": {"metadata": {"labels": template_labels},
                                  "spec": {"containers": [{"name": "app"}]}}}}


def namespace(name, **extra):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **extra}}


def one(doc):
    (obj,) = parse(doc)
    return obj


def error(doc) -> ModelError:
    with pytest.raises(ModelError) as exc:
        parse(doc)
    return exc.value


# ------------------------------------------------------------------ names
@pytest.mark.parametrize("name", ["My-ns", "a.b", "-a", "a-", "a_b", "a" * 64, "", 7])
def test_namespace_names_are_dns1123_labels(name):
    assert error(namespace(name)).path == "metadata.name"


@pytest.mark.parametrize("name", ["web", "a.b", "1web", "a" * 253])
def test_pod_names_are_dns1123_subdomains(name):
    assert one(pod(name)).name == name


@pytest.mark.parametrize("name", ["Web", "a..b", "a_b", "-a", "a" * 254, "web\n"])
def test_invalid_pod_names(name):
    assert error(pod(name)).path == "metadata.name"


@pytest.mark.parametrize("name", ["1web", "web.x", "a" * 64, "Web", "web-"])
def test_service_names_are_dns1035_labels(name):
    err = error(service({"ports": [{"port": 80}]}, name=name))
    assert err.path == "metadata.name"


def test_service_name_may_be_63_chars_and_contain_digits():
    assert one(service({"ports": [{"port": 80}]}, name="w" + "1" * 62)).name == "w" + "1" * 62


@pytest.mark.parametrize("ns", ["X", "a.b", ""])
def test_metadata_namespace_is_a_dns1123_label(ns):
    assert error(pod(namespace=ns)).path == "metadata.namespace"


def test_namespace_gets_its_metadata_name_label_from_the_api_server():
    ns = one(namespace("x", labels={"team": "a", "kubernetes.io/metadata.name": "forged"}))
    assert ns.labels == {"team": "a", "kubernetes.io/metadata.name": "x"}


# ------------------------------------------------------------------ labels
@pytest.mark.parametrize("key", ["app", "A", "a_b.c-d", "app.kubernetes.io/name", "example.com/x",
                                 "a" * 63, "k8s.io/" + "a" * 63])
def test_valid_label_keys(key):
    assert one(pod(labels={key: "v"})).labels == {key: "v"}


@pytest.mark.parametrize("key", ["-a", "a-", "a b", "example.com/", "/a", "Example.com/a", "a/b/c",
                                 "a" * 64, "", "a\n"])
def test_invalid_label_keys(key):
    err = error(pod(labels={key: "v"}))
    assert (err.where, err.path) == ("Pod x/a", f"metadata.labels.{key}")


@pytest.mark.parametrize("value", ["", "v1", "a.b_c-D", "a" * 63])
def test_valid_label_values(value):
    assert one(pod(labels={"k": value})).labels == {"k": value}


@pytest.mark.parametrize("value", ["-a", "a-", "a b", "a" * 64, "a/b", "v\n", 1, True, 1.5, ["a"]])
def test_invalid_label_values(value):
    err = error(pod(labels={"tier": value}))
    assert err.path == "metadata.labels.tier"


def test_integer_label_value_tells_to_quote_it():
    err = error(pod(labels={"tier": 1}))
    assert str(err).startswith("Pod x/a: metadata.labels.tier: ")
    assert "must be a string" in err.problem


# ------------------------------------------------------------------ container ports
@pytest.mark.parametrize("value", [0, 65536, -1, "80", 80.0, True])
def test_container_port_range(value):
    assert error(port_pod(containerPort=value)).path == "spec.containers[0].ports[0].containerPort"


@pytest.mark.parametrize("value", [1, 65535])
def test_container_port_bounds_accepted(value):
    assert one(port_pod(containerPort=value)).spec.ports() == (ContainerPort(value, "TCP"),)


@pytest.mark.parametrize("name", ["http", "h2", "a-b-c", "abcdefghijklmno"])
def test_container_port_iana_names(name):
    assert one(port_pod(containerPort=80, name=name)).spec.ports()[0].name == name


@pytest.mark.parametrize("name", ["abcdefghijklmnop", "HTTP", "-http", "http-", "a--b", "8080", "http_2", ""])
def test_invalid_container_port_names(name):
    assert error(port_pod(containerPort=80, name=name)).path == "spec.containers[0].ports[0].name"


def test_container_port_protocol():
    assert one(port_pod(containerPort=53, protocol="UDP")).spec.ports() == (ContainerPort(53, "UDP"),)
    assert error(port_pod(containerPort=53, protocol="udp")).path == "spec.containers[0].ports[0].protocol"


def test_duplicate_container_names():
    doc = pod(containers=[{"name": "app"}, {"name": "app"}])
    assert error(doc).path == "spec.containers[1].name"


def test_duplicate_port_names_in_a_container():
    doc = pod(containers=[{"name": "app", "ports": [{"containerPort": 80, "name": "http"},
                                                    {"containerPort": 81, "name": "http"}]}])
    assert error(doc).path == "spec.containers[0].ports[1].name"


@pytest.mark.parametrize("containers", [[], None])
def test_a_pod_needs_a_container(containers):
    doc = pod()
    doc["spec"]["containers"] = containers
    assert error(doc).path == "spec.containers"


# ------------------------------------------------------------------ unknown kinds and fields
@pytest.mark.parametrize("kind", ["ReplicaSet", "Ingress", "pod", "NetworkPolicies"])
def test_unknown_kinds(kind):
    err = error({"apiVersion": "v1", "kind": kind, "metadata": {"name": "a"}})
    assert err.path == "kind"
    assert repr(kind) in err.problem


@pytest.mark.parametrize("kind, version", [("Deployment", "v1"), ("Pod", "apps/v1"), ("Service", None)])
def test_api_version_must_match_the_kind(kind, version):
    doc = {"kind": kind, "metadata": {"name": "a"}} | ({"apiVersion": version} if version else {})
    assert error(doc).path == "apiVersion"


@pytest.mark.parametrize("mutate, path", [
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d["metadata"].update(label={}), "metadata.label"),
    (lambda d: d["spec"]["containers"][0].update(portz=[]), "spec.containers[0].portz"),
    (lambda d: d["spec"]["containers"][0]["ports"][0].update(port=80), "spec.containers[0].ports[0].port"),
])
def test_unknown_fields_are_errors(mutate, path):
    doc = pod()
    mutate(doc)
    err = error(doc)
    assert (err.where, err.path) == ("Pod x/a", path)
    assert "unknown field" in err.problem


UNENFORCED = [
    (lambda d: d["spec"].update(hostNetwork=True), "spec.hostNetwork", "own"),
    (lambda d: d["spec"].update(hostPID=True), "spec.hostPID", "host's processes"),
    (lambda d: d["spec"].update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), "spec.volumes", "hostPath"),
    (lambda d: d["spec"].update(securityContext={"sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}]}),
     "spec.securityContext.sysctls", "securityContext.sysctls"),
    (lambda d: d["spec"].update(securityContext={"runAsUser": 1000}), "spec.securityContext.runAsUser", "runAsUser"),
    (lambda d: d["spec"]["containers"][0].update(securityContext={"privileged": True}),
     "spec.containers[0].securityContext.privileged", "never privileged"),
    (lambda d: d["spec"]["containers"][0].update(securityContext={"capabilities": {"add": ["NET_ADMIN"]}}),
     "spec.containers[0].securityContext.capabilities.add", "capabilities.add"),
    (lambda d: d["spec"]["containers"][0].update(securityContext={"runAsUser": 0}),
     "spec.containers[0].securityContext.runAsUser", "runAsUser"),
    (lambda d: d["spec"]["containers"][0].update(volumeMounts=[{"name": "h", "mountPath": "/h"}]),
     "spec.containers[0].volumeMounts", "no volumes"),
    (lambda d: d["spec"]["containers"][0]["ports"][0].update(hostPort=8080), "spec.containers[0].ports[0].hostPort",
     "NodePort"),
]


@pytest.mark.parametrize("mutate, path, why", UNENFORCED, ids=[u[1] for u in UNENFORCED])
def test_fields_labkit_would_not_enforce_are_refused_with_their_path(mutate, path, why):
    doc = pod()
    mutate(doc)
    err = error(doc)
    assert (err.where, err.path) == ("Pod x/a", path)
    assert "labkit does not enforce it" in err.problem and why in err.problem, err.problem


def test_the_same_fields_are_refused_in_a_deployment_template():
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "x"},
           "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
               "metadata": {"labels": {"a": "b"}},
               "spec": {"containers": [{"name": "c", "securityContext": {"privileged": True}}]}}}}
    err = error(doc)
    assert err.path == "spec.template.spec.containers[0].securityContext.privileged"


def test_dropping_capabilities_is_honoured_and_false_flags_are_fine():
    doc = pod(containers=[{"name": "app", "securityContext": {"privileged": False, "capabilities": {
        "drop": ["NET_RAW", "CAP_SYS_ADMIN"]}}, "ports": [{"containerPort": 80}]}], hostNetwork=False)
    [obj] = parse(doc)
    assert obj.spec.containers[0].cap_drop == ("NET_RAW", "SYS_ADMIN")
    bad = pod(containers=[{"name": "app", "securityContext": {"capabilities": {"drop": ["net raw"]}}}])
    assert error(bad).path == "spec.containers[0].securityContext.capabilities.drop[0]"


def test_harmless_real_fields_are_accepted():
    doc = pod(containers=[{"name": "app", "image": "nginx", "imagePullPolicy": "IfNotPresent",
                           "resources": {"limits": {"cpu": "1"}}, "ports": [{"containerPort": 80}]}],
              restartPolicy="Always", terminationGracePeriodSeconds=0)
    doc["metadata"]["annotations"] = {"note": "x"}
    doc["status"] = {"phase": "Running"}
    assert one(doc).spec.containers[0].image == "nginx"


def test_readiness_probe_needs_exactly_one_handler():
    doc = pod(containers=[{"name": "app", "readinessProbe": {"periodSeconds": 1}}])
    assert error(doc).path == "spec.containers[0].readinessProbe"
    ok = one(pod(containers=[{"name": "app", "readinessProbe": {"httpGet": {"port": "http", "path": "/ready"}}}]))
    probe = ok.spec.containers[0].readiness_probe
    assert (probe.kind, probe.port, probe.path) == ("httpGet", "http", "/ready")


# ------------------------------------------------------------------ Deployment
def test_deployment_selector_must_match_template_labels():
    err = error(deployment({"matchLabels": {"app": "web"}}, {"app": "api"}))
    assert (err.where, err.path) == ("Deployment x/web", "spec.selector")


def test_deployment_empty_selector_is_invalid():
    assert error(deployment({}, {"app": "web"})).path == "spec.selector"


def test_deployment_selector_with_expressions_matching_the_template():
    dep = one(deployment({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "x"]}]},
                         {"app": "web", "tier": "front"}))
    assert dep.template_labels == {"app": "web", "tier": "front"}


@pytest.mark.parametrize("replicas", [-1, "2", 1.5])
def test_deployment_replicas_must_be_a_non_negative_integer(replicas):
    assert error(deployment({"matchLabels": {"a": "b"}}, {"a": "b"}, replicas)).path == "spec.replicas"


def test_deployment_replicas_default_to_one():
    doc = deployment({"matchLabels": {"a": "b"}}, {"a": "b"})
    del doc["spec"]["replicas"]
    assert one(doc).replicas == 1


# ------------------------------------------------------------------ Service
def test_headless_service():
    svc = one(service({"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}))
    assert svc.headless
    assert one(service({"clusterIP": "None", "selector": {"app": "web"}})).ports == ()


def test_only_a_headless_service_may_have_no_ports():
    assert error(service({"selector": {"app": "web"}})).path == "spec.ports"


def test_headless_service_cannot_be_node_port():
    assert error(service({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]})).path == "spec.type"


@pytest.mark.parametrize("node_port", [30000, 30080, 32767])
def test_node_port_range_accepted(node_port):
    svc = one(service({"type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]}))
    assert svc.ports == (ServicePort(80, "TCP", None, None, node_port),)


@pytest.mark.parametrize("node_port", [29999, 32768, 80])
def test_node_port_outside_range(node_port):
    err = error(service({"type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]}))
    assert err.path == "spec.ports[0].nodePort"


def test_node_port_only_with_type_node_port():
    err = error(service({"ports": [{"port": 80, "nodePort": 30080}]}))
    assert err.path == "spec.ports[0].nodePort"


@pytest.mark.parametrize("svc_type", ["LoadBalancer", "clusterip"])
def test_unsupported_service_types(svc_type):
    assert error(service({"type": svc_type, "ports": [{"port": 80}]})).path == "spec.type"


def test_multiple_service_ports_need_names():
    err = error(service({"ports": [{"port": 80, "name": "http"}, {"port": 443}]}))
    assert err.path == "spec.ports[1].name"


def test_service_port_names_and_ports_are_unique():
    dup_name = [{"port": 80, "name": "http"}, {"port": 81, "name": "http"}]
    dup_port = [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]
    assert error(service({"ports": dup_name})).path == "spec.ports[1].name"
    assert error(service({"ports": dup_port})).path == "spec.ports[1].port"
    same_port_other_protocol = [{"port": 53, "name": "dns"}, {"port": 53, "name": "dns-udp", "protocol": "UDP"}]
    assert len(one(service({"ports": same_port_other_protocol})).ports) == 2


def test_service_port_names_are_dns_labels_not_iana_names():
    # a Service port name may be longer than 15 characters; a container port name may not
    long = "http-alternative-port"
    assert one(service({"ports": [{"port": 80, "name": long}]})).ports[0].name == long
    assert error(port_pod(containerPort=80, name=long)).path == "spec.containers[0].ports[0].name"


@pytest.mark.parametrize("target, parsed", [(8080, 8080), ("http", "http"), (None, None)])
def test_target_port_by_number_or_name(target, parsed):
    port = {"port": 80} | ({"targetPort": target} if target is not None else {})
    sport = one(service({"ports": [port]})).ports[0]
    assert sport.target_port == parsed
    assert sport.target == (80 if target is None else target)


@pytest.mark.parametrize("target", [0, 65536, "Http", "8080", "a--b"])
def test_invalid_target_ports(target):
    assert error(service({"ports": [{"port": 80, "targetPort": target}]})).path == "spec.ports[0].targetPort"


@pytest.mark.parametrize("ip", ["10.96.0.300", "abc", "10.96.0"])
def test_invalid_cluster_ip_syntax(ip):
    assert error(service({"clusterIP": ip, "ports": [{"port": 80}]})).path == "spec.clusterIP"


def test_session_affinity_values():
    assert one(service({"sessionAffinity": "ClientIP", "ports": [{"port": 80}]})).session_affinity == "ClientIP"
    assert error(service({"sessionAffinity": "Sticky", "ports": [{"port": 80}]})).path == "spec.sessionAffinity"
