"""Pods and Deployments parsed from manifests.

Owns: the fields labkit understands for these kinds (and the real-but-irrelevant ones it
accepts and ignores), their validation, and the conventions of the lab image (an omitted
image or ``image: labkit`` means the lab image).
"""
from __future__ import annotations

import ipaddress
from typing import Any

from labkit.errors import ModelError
from labkit.model import addressing as addr
from labkit.model import fields as f
from labkit.model import unenforced
from labkit.model.objects import Container, ContainerPort, Deployment, DNSConfig, PodSpec, ReadinessProbe
from labkit.model.parse_policy import parse_selector

LAB_IMAGE = "labkit"
# Real Kubernetes fields with no meaning for the lab's network: accepted, ignored.
_IGNORED_CONTAINER = ("imagePullPolicy", "resources", "workingDir", "livenessProbe", "startupProbe",
                      "terminationMessagePath", "terminationMessagePolicy", "stdin", "tty")
_IGNORED_POD_SPEC = ("terminationGracePeriodSeconds", "restartPolicy", "schedulerName",
                     "automountServiceAccountToken", "serviceAccountName")
_POD_DNS = ("hostname", "subdomain", "dnsPolicy", "dnsConfig", "enableServiceLinks")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
MAX_NAMESERVERS, MAX_SEARCHES, MAX_SEARCH_CHARS = 3, 32, 2048  # the API server's limits


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
    node.allow(("containers", "nodeName", "securityContext") + _POD_DNS + tuple(unenforced.POD_SPEC),
               _IGNORED_POD_SPEC)
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
    return PodSpec(containers, node_name, **_pod_dns(node))


def _pod_dns(node: f.FieldMap) -> dict:
    """spec.hostname, subdomain, dnsPolicy and dnsConfig, with the API server's rules."""
    if node.data.get("enableServiceLinks") is not None and node.data["enableServiceLinks"] is not False:
        raise ModelError("labkit does not put Services into environment variables (FOO_SERVICE_HOST): find "
                         "Services by their DNS names, and set enableServiceLinks: false or leave it out",
                         path=node.at("enableServiceLinks"))
    hostname = node.data.get("hostname")
    hostname = None if hostname is None else f.dns1123_label(hostname, node.at("hostname"))
    subdomain = node.data.get("subdomain")
    subdomain = None if subdomain is None else f.dns1123_label(subdomain, node.at("subdomain"))
    policy = f.one_of(node.get("dnsPolicy", "ClusterFirst"), DNS_POLICIES, node.at("dnsPolicy"))
    config = node.node("dnsConfig")
    if policy == "None" and (config is None or not config.data.get("nameservers")):
        raise ModelError("dnsPolicy None needs at least one nameserver in dnsConfig.nameservers",
                         path=node.at("dnsConfig.nameservers"))
    # ClusterFirstWithHostNet is ClusterFirst for a pod on the pod network (hostNetwork is refused)
    return {"hostname": hostname, "subdomain": subdomain,
            "dns_policy": "ClusterFirst" if policy == "ClusterFirstWithHostNet" else policy,
            "dns_config": None if config is None else _dns_config(config)}


def _dns_config(config: f.FieldMap) -> DNSConfig:
    config.allow(("nameservers", "searches", "options"))
    servers = config.list("nameservers")
    if len(servers) > MAX_NAMESERVERS:
        raise ModelError(f"at most {MAX_NAMESERVERS} nameservers (glibc reads no more)", path=config.at("nameservers"))
    nameservers = tuple(f.ip_address(v, p) for p, v in servers)
    for (path, _), ip in zip(servers, nameservers):
        if ":" in ip:
            raise ModelError("the lab is IPv4 only", path=path)
        if not addr.in_lab(ip) and not ipaddress.ip_address(ip).is_loopback:
            raise ModelError(f"{ip} is outside the lab, and no lab packet may leave this machine: use cluster DNS "
                             f"({addr.DNS_SERVICE_IP}), a pod's or Service's address, or 127.0.0.1", path=path)
    searches = []
    for path, value in config.list("searches"):
        if not isinstance(value, str):
            raise ModelError("must be a string", path=path)
        searches.append(f.dns1123_subdomain(value.removesuffix("."), path))
    if len(searches) > MAX_SEARCHES:
        raise ModelError(f"at most {MAX_SEARCHES} search domains", path=config.at("searches"))
    if len(" ".join(searches)) > MAX_SEARCH_CHARS:
        raise ModelError(f"the search domains are longer than {MAX_SEARCH_CHARS} characters in all",
                         path=config.at("searches"))
    options = []
    for path, item in config.list("options"):
        o = f.FieldMap(item, path, what="a resolver option")
        o.allow(("name", "value"))
        name = o.string("name", required=True)
        if not name or any(c.isspace() for c in name) or ":" in name:
            raise ModelError("must be a resolver option name such as ndots, timeout, attempts, edns0",
                             path=o.at("name"))
        value = o.data.get("value")
        if value is not None and (not isinstance(value, str) or any(c.isspace() for c in value)):
            raise ModelError("must be a string without spaces (e.g. \"2\")", path=o.at("value"))
        if name == "ndots" and (value is None or not value.isdigit()):
            raise ModelError("ndots needs a number value (e.g. \"2\")", path=o.at("value"))
        options.append((name, value))
    return DNSConfig(nameservers, tuple(searches), tuple(options))


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
