"""Services and EndpointSlices parsed from manifests, with the API server's rules for them.

Owns every Service field labkit accepts (each one honoured by the oracle and both backends,
or refused with its field path: nothing is accepted and ignored), and hand-written
``discovery.k8s.io/v1`` EndpointSlices, whose addresses must be the lab's own (no packet of
a lab may leave the machine).
"""
from __future__ import annotations

import ipaddress
from typing import Any

from labkit.errors import ModelError
from labkit.model import addressing as addr
from labkit.model import fields as f
from labkit.model.objects import EndpointSlice, Service, ServicePort, SliceEndpoint, SlicePort

TYPES = ("ClusterIP", "NodePort", "ExternalName")
MAX_AFFINITY_SECONDS = 86400  # the API server's bound on sessionAffinityConfig.clientIP.timeoutSeconds
DEFAULT_AFFINITY_SECONDS = 10800
_SPEC = ("type", "selector", "ports", "clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy",
         "sessionAffinity", "sessionAffinityConfig", "publishNotReadyAddresses", "internalTrafficPolicy",
         "externalTrafficPolicy", "externalName")
_REFUSED = {  # real Service fields with no counterpart in a lab (no cloud, no external IPs)
    "externalIPs": "the lab has no external IPs: use a NodePort and reach it from the lab's internet host",
    "loadBalancerIP": "the lab has no load balancer: use type NodePort",
    "loadBalancerSourceRanges": "the lab has no load balancer: use type NodePort",
    "loadBalancerClass": "the lab has no load balancer: use type NodePort",
    "allocateLoadBalancerNodePorts": "the lab has no load balancer: use type NodePort",
    "healthCheckNodePort": "the lab has no cloud load balancer to ask it: remove it",
    "trafficDistribution": "labkit's nodes have no zones: remove it (internalTrafficPolicy: Local keeps "
                           "traffic on the client's node)",
}
_WHY = "labkit does not enforce it, so the lab would run without it"


def _ip_fields(spec: f.FieldMap, cluster_ip: str | None) -> str | None:
    """clusterIPs / ipFamilies / ipFamilyPolicy on an IPv4-only cluster; returns the clusterIP."""
    families = spec.list("ipFamilies")
    for path, value in families:
        if value != "IPv4":
            raise ModelError(f"{value!r}: the lab's cluster is IPv4 only (write [IPv4] or leave it out)", path=path)
    if len(families) > 1:
        raise ModelError("the lab's cluster is IPv4 only: one family, IPv4", path=spec.at("ipFamilies"))
    policy = spec.get("ipFamilyPolicy")
    if policy is not None:
        f.one_of(policy, ("SingleStack", "PreferDualStack", "RequireDualStack"), spec.at("ipFamilyPolicy"))
        if policy == "RequireDualStack":
            raise ModelError("the lab's cluster is IPv4 only, so it cannot give a dual-stack Service: "
                             "use SingleStack or PreferDualStack", path=spec.at("ipFamilyPolicy"))
    ips = [(path, value) for path, value in spec.list("clusterIPs")]
    if len(ips) > 1:
        raise ModelError("the lab's cluster is IPv4 only: at most one address", path=spec.at("clusterIPs"))
    if ips:
        path, value = ips[0]
        if not isinstance(value, str):
            raise ModelError("must be a string", path=path)
        if cluster_ip is not None and value != cluster_ip:
            raise ModelError(f"must equal spec.clusterIP ({cluster_ip!r}) when both are set", path=path)
        cluster_ip = value
    return cluster_ip


def _affinity(spec: f.FieldMap) -> tuple[str, int]:
    affinity = f.one_of(spec.get("sessionAffinity", "None"), ("None", "ClientIP"), spec.at("sessionAffinity"))
    config = spec.node("sessionAffinityConfig")
    if config is None:
        return affinity, DEFAULT_AFFINITY_SECONDS
    config.allow(("clientIP",))
    if affinity != "ClientIP":
        raise ModelError("must not be set when sessionAffinity is None: set sessionAffinity: ClientIP, or remove it",
                         path=spec.at("sessionAffinityConfig"))
    client = config.node("clientIP")
    if client is None:
        return affinity, DEFAULT_AFFINITY_SECONDS
    client.allow(("timeoutSeconds",))
    seconds = client.integer("timeoutSeconds")
    if seconds is None:
        return affinity, DEFAULT_AFFINITY_SECONDS
    if affinity != "ClientIP":
        raise ModelError("must not be set when sessionAffinity is None: set sessionAffinity: ClientIP",
                         path=client.at("timeoutSeconds"))
    if not 1 <= seconds <= MAX_AFFINITY_SECONDS:
        raise ModelError(f"must be between 1 and {MAX_AFFINITY_SECONDS} (seconds)", path=client.at("timeoutSeconds"))
    return affinity, seconds


def _ports(spec: f.FieldMap, svc_type: str) -> tuple[ServicePort, ...]:
    items = spec.list("ports")
    ports, seen_names, seen = [], set(), set()
    for ppath, item in items:
        p = f.FieldMap(item, ppath, what="a service port")
        p.allow(("port", "targetPort", "protocol", "name", "nodePort", "appProtocol"))
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
            if not addr.NODE_PORT_FIRST <= node_port <= addr.NODE_PORT_LAST:
                raise ModelError(f"{node_port} is outside the NodePort range 30000-32767", path=p.at("nodePort"))
        ports.append(ServicePort(port, proto, pname, target, node_port, p.string("appProtocol")))
    return tuple(ports)


def _external_name(spec: f.FieldMap, svc_type: str, cluster_ip: str | None, selector: Any) -> str | None:
    if svc_type != "ExternalName":
        if spec.get("externalName") is not None:
            raise ModelError("may only be set when type is ExternalName", path=spec.at("externalName"))
        return None
    name = spec.string("externalName", required=True)
    f.dns1123_subdomain(name.lower().removesuffix("."), spec.at("externalName"))
    if cluster_ip not in (None, ""):
        raise ModelError("must be empty for an ExternalName Service (it is a DNS alias, with no ClusterIP)",
                         path=spec.at("clusterIP"))
    if selector:
        raise ModelError("an ExternalName Service selects no pods (it is a DNS alias): remove the selector",
                         path=spec.at("selector"))
    if spec.get("sessionAffinity", "None") != "None":
        raise ModelError("an ExternalName Service has no proxy to keep affinity: remove it",
                         path=spec.at("sessionAffinity"))
    for key in ("internalTrafficPolicy", "publishNotReadyAddresses"):
        if spec.get(key) is not None:
            raise ModelError("an ExternalName Service is only a DNS alias (no proxy, no endpoints): remove it",
                             path=spec.at(key))
    if spec.get("ports"):
        raise ModelError("an ExternalName Service is only a DNS alias: nothing listens on its ports, and clients "
                         "connect to the target's own ports; remove ports", path=spec.at("ports"))
    return name.lower().removesuffix(".")


def parse_service(doc: dict, namespace: str, name: str, labels: dict) -> Service:
    spec = f.FieldMap(doc.get("spec"), "spec")
    spec.allow(_SPEC + tuple(_REFUSED))
    for key, why in _REFUSED.items():
        if spec.data.get(key) not in (None, [], {}, ""):
            raise ModelError(f"{_WHY}: {why}", path=spec.at(key))
    svc_type = spec.get("type", "ClusterIP")
    if svc_type == "LoadBalancer":
        raise ModelError("type LoadBalancer is not supported by labkit (the lab has no cloud): use NodePort",
                         path=spec.at("type"))
    f.one_of(svc_type, TYPES, spec.at("type"))
    cluster_ip = _ip_fields(spec, spec.string("clusterIP"))
    if cluster_ip not in (None, "", "None"):
        f.ip_address(cluster_ip, spec.at("clusterIP"))
    if cluster_ip == "None" and svc_type != "ClusterIP":
        raise ModelError(f"a headless Service (clusterIP: None) must have type ClusterIP, not {svc_type}",
                         path=spec.at("clusterIP" if svc_type == "ExternalName" else "type"))
    selector = spec.data.get("selector")
    # "If empty or not present, the service is assumed to have an external process managing its
    # endpoints" (ServiceSpec API): an empty selector selects no pods, unlike a label selector.
    selector = None if selector is None else (f.labels(selector, spec.at("selector")) or None)
    external = _external_name(spec, svc_type, cluster_ip, selector)
    affinity, timeout = _affinity(spec)
    ports = _ports(spec, svc_type)
    if not ports and cluster_ip != "None" and svc_type != "ExternalName":
        raise ModelError("must have at least one port (only a headless or ExternalName Service may have none)",
                         path=spec.at("ports"))
    if cluster_ip == "None":
        for key, value in (("internalTrafficPolicy", "Local"), ("sessionAffinity", "ClientIP")):
            if spec.get(key) == value:
                raise ModelError(f"a headless Service has no ClusterIP, so kube-proxy never handles its traffic and "
                                 f"{key}: {value} would do nothing: remove it (clients connect to the pods directly)",
                                 path=spec.at(key))
    pnra = spec.get("publishNotReadyAddresses", False)
    if not isinstance(pnra, bool):
        raise ModelError("must be true or false", path=spec.at("publishNotReadyAddresses"))
    itp = f.one_of(spec.get("internalTrafficPolicy", "Cluster"), ("Cluster", "Local"),
                   spec.at("internalTrafficPolicy"))
    etp = spec.get("externalTrafficPolicy")
    if etp is not None:
        etp = f.one_of(etp, ("Cluster", "Local"), spec.at("externalTrafficPolicy"))
        if svc_type != "NodePort":
            raise ModelError(f"may only be set for a NodePort Service (traffic from outside the cluster), not "
                             f"type {svc_type}", path=spec.at("externalTrafficPolicy"))
    return Service(namespace, name, labels, svc_type, selector, ports, cluster_ip if cluster_ip else None,
                   affinity, timeout, pnra, itp, etp or "Cluster", external)


def lab_address(ip: str, path: str) -> str:
    """An endpoint address must be one of the lab's own: a pod, a node, or the lab's internet host."""
    f.ip_address(ip, path)
    a = ipaddress.ip_address(ip)
    if a.version != 4:
        raise ModelError("the lab is IPv4 only", path=path)
    if a.is_loopback or a.is_link_local or a.is_multicast or a.is_unspecified:
        raise ModelError(f"{ip} may not be an endpoint (loopback, link-local, multicast and 0.0.0.0 are refused, "
                         "as by the API server)", path=path)
    if a in addr.SERVICE_CIDR:
        raise ModelError(f"{ip} is a Service address (the Service range is {addr.SERVICE_CIDR}): an endpoint is "
                         "where traffic ends up, a pod or host address", path=path)
    if not (a in addr.POD_CIDR or a in addr.NODE_FABRIC or a in addr.INTERNET_CIDR):
        raise ModelError(f"{ip} is outside the lab, and no lab packet may leave this machine: use a pod's IP, a "
                         f"node's ({addr.NODE_FABRIC}) or the lab's internet host ({addr.INTERNET_HOST_IP})", path=path)
    return ip


def _slice_endpoint(item: Any, path: str, namespace: str) -> SliceEndpoint:
    e = f.FieldMap(item, path, what="an endpoint")
    e.allow(("addresses", "conditions", "hostname", "nodeName", "targetRef", "zone"))
    addresses = e.list("addresses", required=True)
    if len(addresses) != 1:
        raise ModelError("give exactly one address per endpoint (kube-proxy uses only the first): write one "
                         "endpoint per address", path=e.at("addresses"))
    apath, address = addresses[0]
    if not isinstance(address, str):
        raise ModelError("must be a string", path=apath)
    address = lab_address(address, apath)
    ready = True
    conditions = e.node("conditions")
    if conditions is not None:
        conditions.allow(("ready", "serving", "terminating"))
        for key in ("ready", "serving", "terminating"):
            value = conditions.data.get(key)
            if value is not None and not isinstance(value, bool):
                raise ModelError("must be true or false", path=conditions.at(key))
        if conditions.data.get("terminating"):
            raise ModelError(f"{_WHY}: labkit has no terminating endpoints (leave terminating out or false)",
                             path=conditions.at("terminating"))
        ready = conditions.data.get("ready") is not False
        if conditions.data.get("serving") is not None and conditions.data["serving"] != ready:
            raise ModelError("must equal conditions.ready (labkit has no terminating endpoints)",
                             path=conditions.at("serving"))
    hostname = e.data.get("hostname")
    if hostname is not None:
        hostname = f.dns1123_label(hostname, e.at("hostname"))
    node_name = e.string("nodeName")
    if e.get("zone") is not None:
        raise ModelError(f"{_WHY}: labkit's nodes have no zones (remove zone)", path=e.at("zone"))
    target = None
    ref = e.node("targetRef")
    if ref is not None:
        ref.allow(("kind", "name", "namespace", "uid", "apiVersion", "resourceVersion"))
        if ref.get("kind", "Pod") != "Pod":
            raise ModelError("labkit knows endpoints that are pods: kind Pod (or leave targetRef out)",
                             path=ref.at("kind"))
        target_ns = f.dns1123_label(ref.get("namespace", namespace), ref.at("namespace"))
        target = f"{target_ns}/{f.dns1123_subdomain(ref.require('name'), ref.at('name'))}"
    return SliceEndpoint(address, ready, hostname, node_name, target)


def parse_endpoint_slice(doc: dict, namespace: str, name: str, labels: dict) -> EndpointSlice:
    node = f.FieldMap(doc, "")
    node.allow(("apiVersion", "kind", "metadata", "addressType", "endpoints", "ports"))
    family = node.string("addressType", required=True)
    if family != "IPv4":
        f.one_of(family, ("IPv4", "IPv6", "FQDN"), "addressType")
        raise ModelError(f"the lab's cluster is IPv4 only: addressType must be IPv4, not {family}", path="addressType")
    endpoints = [_slice_endpoint(item, path, namespace) for path, item in node.list("endpoints")]
    if len(endpoints) > 1000:
        raise ModelError("at most 1000 endpoints in one EndpointSlice", path="endpoints")
    ports, seen = [], set()
    for path, item in node.list("ports"):
        p = f.FieldMap(item, path, what="an endpoint port")
        p.allow(("name", "port", "protocol", "appProtocol"))
        pname = p.data.get("name") or None
        if pname is not None:
            pname = f.dns1123_label(pname, p.at("name"))
        if p.data.get("port") is None:
            raise ModelError("labkit needs the port number (an unset port would mean every port)", path=p.at("port"))
        proto = f.protocol(p.data.get("protocol"), p.at("protocol"))
        if (pname, proto) in seen:
            raise ModelError(f"duplicate port name {pname or '(unnamed)'!r} for {proto}", path=p.at("name"))
        seen.add((pname, proto))
        ports.append(SlicePort(f.port_number(p.data["port"], p.at("port")), proto, pname, p.string("appProtocol")))
    service = labels.get(EndpointSlice.SERVICE_LABEL)
    if service is not None:
        f.dns1035_label(service, f"metadata.labels.{EndpointSlice.SERVICE_LABEL}")
    return EndpointSlice(namespace, name, labels, tuple(endpoints), tuple(ports))
