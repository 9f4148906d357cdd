"""Pods, Deployments and Services parsed from manifests.

Owns: the fields labkit understands for these kinds (and the real-but-irrelevant ones it
accepts and ignores), their validation, and the conventions of the lab image (an omitted
image or ``image: labkit`` means the lab image).
"""
from __future__ import annotations

from typing import Any

from labkit.errors import ModelError
from labkit.model import fields as f
from labkit.model import unenforced
from labkit.model.objects import (Container, ContainerPort, Deployment, PodSpec, ReadinessProbe,
                                  Service, ServicePort)
from labkit.model.parse_policy import parse_selector

LAB_IMAGE = "labkit"
# Real Kubernetes fields with no meaning for the lab's network: accepted, ignored.
_IGNORED_CONTAINER = ("imagePullPolicy", "resources", "workingDir", "livenessProbe", "startupProbe",
                      "terminationMessagePath", "terminationMessagePolicy", "stdin", "tty")
_IGNORED_POD_SPEC = ("terminationGracePeriodSeconds", "restartPolicy",
                     "dnsPolicy", "schedulerName", "enableServiceLinks", "automountServiceAccountToken",
                     "serviceAccountName")


def _probe(value: Any, path: str) -> ReadinessProbe:
    node = f.FieldMap(value, path, what="a probe")
    timing = ("periodSeconds", "initialDelaySeconds", "failureThreshold", "successThreshold",
              "timeoutSeconds")
    node.allow(("exec", "tcpSocket", "httpGet") + timing, ("terminationGracePeriodSeconds",))
    handlers = [k for k in ("exec", "tcpSocket", "httpGet") if node.data.get(k) is not None]
    if len(handlers) != 1:
        raise ModelError("must have exactly one handler: exec, tcpSocket or httpGet", path=path)
    kind = handlers[0]
    h = node.node(kind)
    numbers = {k: node.integer(k) for k in timing if node.integer(k) is not None}
    for key, value_ in numbers.items():
        minimum = 0 if key == "initialDelaySeconds" else 1
        if value_ < minimum:
            raise ModelError(f"must be >= {minimum}", path=node.at(key))
    kwargs = {"period_seconds": numbers.get("periodSeconds", 10),
              "initial_delay_seconds": numbers.get("initialDelaySeconds", 0),
              "failure_threshold": numbers.get("failureThreshold", 3),
              "success_threshold": numbers.get("successThreshold", 1),
              "timeout_seconds": numbers.get("timeoutSeconds", 1)}
    if kind == "exec":
        h.allow(("command",))
        command = f.strings(h.require("command"), h.at("command"))
        if not command:
            raise ModelError("must not be empty", path=h.at("command"))
        return ReadinessProbe("exec", command=command, **kwargs)
    h.allow(("port", "path", "host", "scheme", "httpHeaders") if kind == "httpGet" else ("port", "host"))
    port = f.int_or_port_name(h.require("port"), h.at("port"))
    return ReadinessProbe(kind, port=port, path=h.string("path", default="/"), **kwargs)


def _container(value: Any, path: str) -> Container:
    node = f.FieldMap(value, path, what="a container")
    node.allow(("name", "image", "command", "args", "ports", "readinessProbe", "env", "securityContext")
               + tuple(unenforced.CONTAINER), _IGNORED_CONTAINER)
    unenforced.refuse(node.data, node.path, unenforced.CONTAINER)
    cap_drop = unenforced.container_security(node.data.get("securityContext"), node.at("securityContext"))
    name = f.dns1123_label(node.require("name"), node.at("name"))
    image = node.string("image", default=LAB_IMAGE) or LAB_IMAGE
    ports = []
    for ppath, item in node.list("ports"):
        p = f.FieldMap(item, ppath, what="a container port")
        p.allow(("containerPort", "protocol", "name") + tuple(unenforced.PORT))
        unenforced.refuse(p.data, p.path, unenforced.PORT)
        pname = p.data.get("name")
        ports.append(ContainerPort(f.port_number(p.require("containerPort"), p.at("containerPort")),
                                   f.protocol(p.data.get("protocol"), p.at("protocol")),
                                   None if pname is None else f.port_name(pname, p.at("name"))))
    env = []
    for epath, item in node.list("env"):
        e = f.FieldMap(item, epath, what="an environment variable")
        e.allow(("name", "value"), ("valueFrom",))
        env.append((e.string("name", required=True), str(e.get("value", ""))))
    probe = node.data.get("readinessProbe")
    return Container(
        name=name, image=image,
        command=f.strings(node.get("command", []), node.at("command")),
        args=f.strings(node.get("args", []), node.at("args")),
        ports=tuple(ports), env=tuple(env), cap_drop=cap_drop,
        readiness_probe=None if probe is None else _probe(probe, node.at("readinessProbe")))


def parse_pod_spec(value: Any, path: str) -> PodSpec:
    node = f.FieldMap(value, path)
    node.allow(("containers", "nodeName", "securityContext") + tuple(unenforced.POD_SPEC), _IGNORED_POD_SPEC)
    unenforced.refuse(node.data, node.path, unenforced.POD_SPEC)
    unenforced.pod_security(node.data.get("securityContext"), node.at("securityContext"))
    items = node.list("containers", required=True)
    if not items:
        raise ModelError("must have at least one container", path=node.at("containers"))
    containers = tuple(_container(v, p) for p, v in items)
    seen_names: set[str] = set()
    seen_ports: dict[tuple[int, str], str] = {}
    port_names: set[str] = set()
    for i, c in enumerate(containers):
        cpath = f"{node.at('containers')}[{i}]"
        if c.name in seen_names:
            raise ModelError(f"duplicate container name {c.name!r}", path=f"{cpath}.name")
        seen_names.add(c.name)
        for j, p in enumerate(c.ports):
            if p.name is not None:
                if p.name in port_names:
                    raise ModelError(f"duplicate port name {p.name!r} in this pod",
                                     path=f"{cpath}.ports[{j}].name")
                port_names.add(p.name)
            key = (p.container_port, p.protocol)
            if key in seen_ports:
                raise ModelError(f"port {p.container_port}/{p.protocol} is already declared by container "
                                 f"{seen_ports[key]!r}: containers of a pod share one network namespace",
                                 path=f"{cpath}.ports[{j}].containerPort")
            seen_ports[key] = c.name
    node_name = node.string("nodeName")
    return PodSpec(containers, node_name)


def parse_deployment(doc: dict, namespace: str, name: str, labels: dict) -> Deployment:
    spec = f.FieldMap(doc.get("spec"), "spec")
    spec.allow(("replicas", "selector", "template"),
               ("strategy", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds", "paused"))
    replicas = spec.integer("replicas", default=1)
    if replicas < 0:
        raise ModelError("must be >= 0", path=spec.at("replicas"))
    selector = parse_selector(spec.require("selector"), spec.at("selector"))
    template = spec.node("template", required=True)
    template.allow(("metadata", "spec"))
    meta = template.node("metadata") or f.FieldMap({}, template.at("metadata"))
    meta.allow(("labels",), ("annotations", "name"))
    tlabels = f.labels(meta.get("labels"), meta.at("labels"))
    if selector.empty or not selector.matches(tlabels):
        raise ModelError(f"selector {selector} does not match template labels {tlabels}: "
                         "make spec.template.metadata.labels satisfy spec.selector", path=spec.at("selector"))
    pod_spec = parse_pod_spec(template.require("spec"), template.at("spec"))
    return Deployment(namespace, name, labels, replicas, selector, tlabels, pod_spec)


def parse_service(doc: dict, namespace: str, name: str, labels: dict) -> Service:
    spec = f.FieldMap(doc.get("spec"), "spec")
    spec.allow(("type", "selector", "ports", "clusterIP", "sessionAffinity"),
               ("clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy",
                "publishNotReadyAddresses", "sessionAffinityConfig"))
    svc_type = spec.get("type", "ClusterIP")
    if svc_type in ("LoadBalancer", "ExternalName"):
        raise ModelError(f"type {svc_type} is not supported by labkit: use ClusterIP or NodePort",
                         path=spec.at("type"))
    f.one_of(svc_type, ("ClusterIP", "NodePort"), spec.at("type"))
    cluster_ip = spec.string("clusterIP")
    if cluster_ip not in (None, "", "None"):
        f.ip_address(cluster_ip, spec.at("clusterIP"))
    if cluster_ip == "None" and svc_type != "ClusterIP":
        raise ModelError("a headless Service (clusterIP: None) must have type ClusterIP", path=spec.at("type"))
    selector = spec.data.get("selector")
    # "If empty or not present, the service is assumed to have an external process managing its
    # endpoints" (ServiceSpec API): an empty selector selects no pods, unlike a label selector.
    selector = None if selector is None else (f.labels(selector, spec.at("selector")) or None)
    affinity = f.one_of(spec.get("sessionAffinity", "None"), ("None", "ClientIP"), spec.at("sessionAffinity"))
    items = spec.list("ports")
    if not items and cluster_ip != "None":
        raise ModelError("must have at least one port (only a headless Service may have none)",
                         path=spec.at("ports"))
    ports, seen_names, seen = [], set(), set()
    for ppath, item in items:
        p = f.FieldMap(item, ppath, what="a service port")
        p.allow(("port", "targetPort", "protocol", "name", "nodePort"), ("appProtocol",))
        pname = p.data.get("name")
        if pname is not None:  # Service port names are DNS labels (container ports: IANA names)
            pname = f.dns1123_label(pname, p.at("name"))
        elif len(items) > 1:
            raise ModelError("is required when a Service has more than one port", path=p.at("name"))
        if pname in seen_names:
            raise ModelError(f"duplicate port name {pname!r}", path=p.at("name"))
        seen_names.add(pname)
        port = f.port_number(p.require("port"), p.at("port"))
        proto = f.protocol(p.data.get("protocol"), p.at("protocol"))
        if (port, proto) in seen:
            raise ModelError(f"duplicate port {port}/{proto}", path=p.at("port"))
        seen.add((port, proto))
        target = p.data.get("targetPort")
        target = None if target is None else f.int_or_port_name(target, p.at("targetPort"))
        node_port = p.integer("nodePort")
        if node_port is not None:
            if svc_type != "NodePort":
                raise ModelError("may only be set when type is NodePort", path=p.at("nodePort"))
            if not 30000 <= node_port <= 32767:
                raise ModelError(f"{node_port} is outside the NodePort range 30000-32767", path=p.at("nodePort"))
        ports.append(ServicePort(port, proto, pname, target, node_port))
    return Service(namespace, name, labels, svc_type, selector, tuple(ports),
                   cluster_ip if cluster_ip else None, affinity)
