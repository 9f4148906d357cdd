"""NetworkPolicy (networking.k8s.io/v1) and label selectors, validated like the API server.

Owns: the fields of a NetworkPolicy and of a LabelSelector, the API's defaulting of
``policyTypes``, and the API server's validation rules for peers, ports and ipBlocks.
"""
from __future__ import annotations

from typing import Any

from labkit.errors import ModelError
from labkit.model import fields as f
from labkit.model.objects import (IPBlock, LabelSelector, NetworkPolicy, Peer, PolicyPort,
                                  PolicyRule, Requirement)

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def parse_selector(value: Any, path: str) -> LabelSelector:
    node = f.FieldMap(value, path, what="a label selector")
    node.allow(("matchLabels", "matchExpressions"))
    labels = f.labels(node.get("matchLabels"), node.at("matchLabels"))
    reqs = []
    for rpath, item in node.list("matchExpressions"):
        r = f.FieldMap(item, rpath)
        r.allow(("key", "operator", "values"))
        key = f.label_key(r.require("key"), r.at("key"))
        op = f.one_of(r.require("operator"), _OPERATORS, r.at("operator"))
        values = f.strings(r.get("values", []), r.at("values"))
        if op in ("In", "NotIn") and not values:
            raise ModelError(f"must be non-empty when operator is {op}", path=r.at("values"))
        if op in ("Exists", "DoesNotExist") and values:
            raise ModelError(f"must be empty when operator is {op}: remove the values", path=r.at("values"))
        for i, v in enumerate(values):
            f.label_value(v, f"{r.at('values')}[{i}]")
        reqs.append(Requirement(key, op, tuple(values)))
    return LabelSelector(tuple(sorted(labels.items())), tuple(reqs))


def _ip_block(node: f.FieldMap) -> IPBlock:
    node.allow(("cidr", "except"))
    net = f.cidr(node.require("cidr"), node.at("cidr"))
    excepts = []
    for epath, item in node.list("except"):
        sub = f.cidr(item, epath)
        if sub.version != net.version or not sub.subnet_of(net) or sub == net:
            raise ModelError(f"{item!r} must be a strict subset of cidr {node.data['cidr']!r}: "
                             "every except range lies inside the block", path=epath)
        excepts.append(item)
    return IPBlock(node.data["cidr"], tuple(excepts))


def _peer(value: Any, path: str) -> Peer:
    node = f.FieldMap(value, path, what="a peer")
    node.allow(("podSelector", "namespaceSelector", "ipBlock"))
    pod = node.data.get("podSelector")
    ns = node.data.get("namespaceSelector")
    block = node.data.get("ipBlock")
    if block is not None and (pod is not None or ns is not None):
        raise ModelError("may not specify both ipBlock and another peer: put the ipBlock in a "
                         "separate list entry", path=path)
    if pod is None and ns is None and block is None:
        raise ModelError("must specify a peer: podSelector, namespaceSelector or ipBlock "
                         "(to allow everyone, omit 'from'/'to' instead)", path=path)
    return Peer(
        pod_selector=None if pod is None else parse_selector(pod, node.at("podSelector")),
        namespace_selector=None if ns is None else parse_selector(ns, node.at("namespaceSelector")),
        ip_block=None if block is None else _ip_block(f.FieldMap(block, node.at("ipBlock"))),
    )


def _port(value: Any, path: str) -> PolicyPort:
    node = f.FieldMap(value, path, what="a port")
    node.allow(("port", "protocol", "endPort"))
    protocol = f.protocol(node.data.get("protocol"), node.at("protocol"))
    port = node.data.get("port")
    if port is not None:
        port = f.int_or_port_name(port, node.at("port"))
    end = node.data.get("endPort")
    if end is not None:
        end = f.port_number(end, node.at("endPort"))
        if port is None:
            raise ModelError("may not be specified without port: add a numeric port", path=node.at("endPort"))
        if isinstance(port, str):
            raise ModelError(f"may not be used with the named port {port!r}: use a numeric port",
                             path=node.at("endPort"))
        if end < port:
            raise ModelError(f"must be >= port ({port})", path=node.at("endPort"))
    return PolicyPort(protocol, port, end)


def _rules(node: f.FieldMap, key: str, peers_key: str) -> tuple[PolicyRule, ...]:
    rules = []
    for rpath, item in node.list(key):
        r = f.FieldMap(item, rpath, what="a rule")
        r.allow((peers_key, "ports"))
        peers = tuple(_peer(p, ppath) for ppath, p in r.list(peers_key))
        ports = tuple(_port(p, ppath) for ppath, p in r.list("ports"))
        rules.append(PolicyRule(peers, ports))
    return tuple(rules)


def parse_network_policy(doc: dict, namespace: str, name: str, labels: dict) -> NetworkPolicy:
    spec = f.FieldMap(doc.get("spec") if doc.get("spec") is not None else {}, "spec")
    spec.allow(("podSelector", "policyTypes", "ingress", "egress"))
    selector = parse_selector(spec.get("podSelector", {}), spec.at("podSelector"))
    ingress = _rules(spec, "ingress", "from")
    egress = _rules(spec, "egress", "to")
    types = spec.data.get("policyTypes")
    if types is None or types == []:  # the API server's defaulting (absent or empty)
        types = ["Ingress"] + (["Egress"] if egress else [])
    else:
        types = list(f.strings(types, spec.at("policyTypes")))
        for i, t in enumerate(types):
            f.one_of(t, ("Ingress", "Egress"), f"{spec.at('policyTypes')}[{i}]")
        if len(set(types)) != len(types):
            raise ModelError("lists a type twice", path=spec.at("policyTypes"))
    return NetworkPolicy(namespace, name, labels, selector, tuple(types), ingress, egress)
