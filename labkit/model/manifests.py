"""Manifests in, model objects out: YAML text, a file or folder, a dict or a list of dicts.

Owns: reading documents, the kinds and apiVersions labkit accepts, ``metadata``, and
naming the document in every error (``NetworkPolicy x/deny-all: spec...``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Union

import yaml

from labkit.errors import ModelError
from labkit.model import fields as f
from labkit.model.objects import Deployment, EndpointSlice, Namespace, NetworkPolicy, Pod, Service
from labkit.model.parse_policy import parse_network_policy
from labkit.model.parse_services import parse_endpoint_slice, parse_service
from labkit.model.parse_workloads import parse_deployment, parse_pod_spec

Source = Union[str, os.PathLike, dict, Iterable[dict]]
Object = Union[Namespace, Pod, Deployment, Service, EndpointSlice, NetworkPolicy]

KINDS = {  # kind -> (apiVersion, namespaced, name rule)
    "Namespace": ("v1", False, f.dns1123_label),
    "Pod": ("v1", True, f.dns1123_subdomain),
    "Service": ("v1", True, f.dns1035_label),
    "Deployment": ("apps/v1", True, f.dns1123_subdomain),
    "NetworkPolicy": ("networking.k8s.io/v1", True, f.dns1123_subdomain),
    "EndpointSlice": ("discovery.k8s.io/v1", True, f.dns1123_subdomain),
}
KIND_ALIASES = {"ns": "Namespace", "namespace": "Namespace", "namespaces": "Namespace",
                "po": "Pod", "pod": "Pod", "pods": "Pod",
                "svc": "Service", "service": "Service", "services": "Service",
                "deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment",
                "netpol": "NetworkPolicy", "networkpolicy": "NetworkPolicy",
                "networkpolicies": "NetworkPolicy",
                "endpointslice": "EndpointSlice", "endpointslices": "EndpointSlice"}


def canonical_kind(kind: str) -> str:
    """``"netpol"``, ``"networkpolicy"`` or ``"NetworkPolicy"`` -> ``"NetworkPolicy"``."""
    if kind in KINDS:
        return kind
    try:
        return KIND_ALIASES[kind.lower()]
    except KeyError as exc:
        raise ModelError(f"unknown kind {kind!r}: labkit knows {', '.join(KINDS)}") from exc


# Bounds on what one read may hold, each a clear error checked before any work is done:
# YAML aliases can make a few hundred bytes stand for billions of nodes ("billion laughs").
MAX_DEPTH = 64             # levels of nesting; no Kubernetes manifest needs more
MAX_NODES = 100_000        # mappings, lists and scalars, counted with every alias expanded
MAX_TEXT = 1024 * 1024     # characters of YAML in one text or file
# libyaml's parser where PyYAML has it (100x faster on hostile text), else the pure-Python one
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_SCALAR = 256 * 1024    # characters in one string


def _read_text(text: str, origin: str) -> list[Any]:
    if len(text) > MAX_TEXT:
        raise ModelError(f"the YAML is too large ({len(text):,} characters; at most {MAX_TEXT:,}): split it",
                         where=origin)
    try:
        docs = [d for d in yaml.load_all(str(text), Loader=_LOADER) if d is not None]  # libyaml wants a plain str
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar YAML resolves but Python cannot hold
        raise ModelError(f"cannot read a value in this YAML: {str(exc)[:200]} (quote it to keep it as text)",
                         where=origin) from exc
    except yaml.YAMLError as exc:
        if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own limit
            raise ModelError(f"cannot parse YAML: it is nested too deeply (more than {MAX_DEPTH} levels; "
                             "no Kubernetes manifest needs that many)", where=origin) from exc
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ModelError(f"cannot parse YAML{at}: {getattr(exc, 'problem', None) or exc}",
                         where=origin) from exc
    except RecursionError as exc:
        raise ModelError("cannot parse YAML: it is nested too deeply", where=origin) from exc
    for doc in docs:
        check_size(doc, origin)
    return docs


def check_size(value: Any, where: str = "") -> None:
    """Refuse a document nested deeper than MAX_DEPTH, holding more than MAX_NODES nodes once
    aliases are expanded, a string longer than MAX_SCALAR, or an alias that contains itself.

    Each distinct object is visited once (sizes of shared ones are remembered), so an alias
    bomb is measured in milliseconds instead of being walked node by node."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, done = stack.pop()
        if isinstance(item, str):
            if len(item) > MAX_SCALAR:
                raise ModelError(f"a string of {len(item):,} characters (at most {MAX_SCALAR:,}): no manifest "
                                 "field needs that", where=where)
            continue
        if not isinstance(item, (dict, list)):
            continue
        key = id(item)
        children = [c for c in (item.values() if isinstance(item, dict) else item) if isinstance(c, (dict, list))]
        if done:
            on_path.discard(key)
            size[key] = 1 + len(item) + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if depth[key] > MAX_DEPTH:
                raise ModelError(f"cannot parse YAML: it is nested too deeply (more than {MAX_DEPTH} levels; "
                                 "no Kubernetes manifest needs that many)", where=where)
            if size[key] > MAX_NODES:
                raise ModelError(f"the document is too large: more than {MAX_NODES:,} values once its YAML "
                                 "aliases (*name) are expanded", where=where)
            continue
        if key in size:
            continue
        if key in on_path:
            raise ModelError("a YAML alias refers to the object that contains it (a cycle)", where=where)
        on_path.add(key)
        stack.append((item, True))
        stack.extend((c, False) for c in (item.values() if isinstance(item, dict) else item)
                     if isinstance(c, (dict, list, str)) and (not isinstance(c, (dict, list)) or id(c) not in size))
        if isinstance(item, dict):
            stack.extend((k, False) for k in item if isinstance(k, str))


def _expand_path(path: Path) -> list[Any]:
    try:
        is_dir = path.is_dir()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise ModelError(f"cannot read {str(path)[:80]!r}: {exc.strerror}") from exc
    if is_dir:
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        return [d for p in files for d in _expand_path(p)]
    if not path.exists():
        raise ModelError(f"file {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read {str(path)!r}: {exc}") from exc
    return _read_text(text, str(path))


def load_documents(source: Source) -> list[dict]:
    """Every document in ``source``, as plain dicts (``kind: List`` is flattened)."""
    if isinstance(source, os.PathLike):
        raw = _expand_path(Path(source))
    elif isinstance(source, str):
        looks_like_path = "\n" not in source and ":" not in source and source.strip()
        raw = _expand_path(Path(source)) if looks_like_path else _read_text(source, "YAML")
    elif isinstance(source, dict):
        check_size(source, "document 1")
        raw = [source]
    else:
        try:
            raw = list(source)
        except TypeError as exc:
            raise ModelError(f"cannot read manifests from {type(source).__name__}: give YAML text, "
                             "a path, a dict or a list of dicts") from exc
    docs: list[dict] = []
    for i, doc in enumerate(raw):
        if not isinstance(source, (str, os.PathLike, dict)):
            check_size(doc, f"document {i + 1}")
        if isinstance(doc, dict) and doc.get("kind") == "List":
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ModelError(f"document {i + 1} (List): items must be a list of objects")
            docs.extend(load_documents(items))
        elif not isinstance(doc, dict):
            raise ModelError(f"document {i + 1} is {type(doc).__name__}, not a Kubernetes object")
        else:
            docs.append(doc)
    return docs


def describe(doc: dict, index: int) -> str:
    """How errors name a document: ``NetworkPolicy x/deny-all`` or ``document 3 (Pod)``."""
    kind = doc.get("kind") if isinstance(doc.get("kind"), str) else "object"
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name")
    if not isinstance(name, str):
        return f"document {index + 1} ({kind})"
    if kind == "Namespace":
        return f"Namespace {name}"
    return f"{kind} {meta.get('namespace') or 'default'}/{name}"


def parse_document(doc: dict, index: int = 0) -> Object:
    """One manifest -> one model object; errors name the document and the field."""
    where = describe(doc, index)
    try:
        return _parse(doc)
    except ModelError as exc:
        located = exc.located(where)
        if located is exc:  # it already names its document: let it go on unchanged
            raise
        raise located from exc


def _parse(doc: dict) -> Object:
    node = f.FieldMap(doc, "")
    kind = node.string("kind", required=True)
    if kind not in KINDS:
        raise ModelError(f"unknown kind {kind!r}: labkit knows {', '.join(KINDS)}", path="kind")
    api_version, namespaced, name_rule = KINDS[kind]
    got_version = node.string("apiVersion", required=True)
    if got_version != api_version:
        raise ModelError(f"{kind} needs apiVersion {api_version!r}, not {got_version!r}", path="apiVersion")
    node.allow(("apiVersion", "kind", "metadata") + (
        ("addressType", "endpoints", "ports") if kind == "EndpointSlice" else ("spec",)), ("status",))
    meta = node.node("metadata", required=True)
    meta.allow(("name", "namespace", "labels"),
               ("annotations", "uid", "resourceVersion", "creationTimestamp", "generation",
                "managedFields"))
    name = name_rule(meta.require("name"), meta.at("name"))
    labels = f.labels(meta.get("labels"), meta.at("labels"))
    if not namespaced:
        if "namespace" in meta.data:
            raise ModelError("a Namespace is not namespaced: remove metadata.namespace", path="metadata.namespace")
        if "spec" in doc and doc["spec"] not in (None, {}):
            f.FieldMap(doc["spec"], "spec").allow((), ("finalizers",))
        labels["kubernetes.io/metadata.name"] = name
        return Namespace(name, labels)
    namespace = f.dns1123_label(meta.get("namespace", "default"), meta.at("namespace"))
    if kind == "Pod":
        return Pod(namespace, name, labels, parse_pod_spec(node.require("spec"), "spec"))
    if kind == "Deployment":
        return parse_deployment(doc, namespace, name, labels)
    if kind == "Service":
        if doc.get("spec") is None:
            raise ModelError("required field is missing", path="spec")
        return parse_service(doc, namespace, name, labels)
    if kind == "EndpointSlice":
        return parse_endpoint_slice({k: v for k, v in doc.items() if k != "status"}, namespace, name, labels)
    return parse_network_policy(doc, namespace, name, labels)


def parse(source: Source) -> list[Object]:
    """Parse every document of ``source``; the first invalid one raises ``ModelError``."""
    return [parse_document(doc, i) for i, doc in enumerate(load_documents(source))]
