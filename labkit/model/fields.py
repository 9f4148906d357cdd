"""Field access with paths, and the value rules the Kubernetes API server applies.

This module owns *how* a manifest field is read and checked (types, names, label syntax,
ports, CIDRs) and how the error names its field path. Which fields a kind has is decided
by the ``parse_*`` modules.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

from labkit.errors import ModelError

# \Z, not $: in Python "$" also matches before a trailing newline ("web\n").
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_IANA_SVC = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")


class FieldMap:
    """A mapping inside a manifest, with its field path, for precise errors."""

    def __init__(self, data: Any, path: str, *, what: str = "an object"):
        if not isinstance(data, dict):
            raise ModelError(f"must be {what} (a mapping), got {_kind(data)}", path=path)
        self.data, self.path = data, path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def allow(self, known: Iterable[str], ignored: Iterable[str] = ()) -> None:
        """Reject keys that are neither known nor harmlessly ignored."""
        known, ignored = set(known), set(ignored)
        for key in self.data:
            if key not in known and key not in ignored:
                hint = f"; known fields here: {', '.join(sorted(known))}" if known else ""
                raise ModelError(f"unknown field {key!r}{hint}", path=self.at(str(key)))

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key, default)
        return default if value is None else value

    def require(self, key: str) -> Any:
        if self.data.get(key) is None:
            raise ModelError("required field is missing", path=self.at(key))
        return self.data[key]

    def node(self, key: str, *, required: bool = False) -> "FieldMap | None":
        value = self.require(key) if required else self.data.get(key)
        return None if value is None else FieldMap(value, self.at(key))

    def list(self, key: str, *, required: bool = False) -> list[tuple[str, Any]]:
        value = self.require(key) if required else self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ModelError(f"must be a list, got {_kind(value)}", path=self.at(key))
        return [(f"{self.at(key)}[{i}]", item) for i, item in enumerate(value)]

    def string(self, key: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.require(key) if required else self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ModelError(f"must be a string, got {_kind(value)}", path=self.at(key))
        return value

    def integer(self, key: str, *, default: int | None = None) -> int | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelError(f"must be an integer, got {_kind(value)}", path=self.at(key))
        return value


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "nothing"}
    return f"{names.get(type(value), type(value).__name__)} ({value!r})" if not isinstance(
        value, (dict, list)) else names[type(value)]


def strings(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModelError("must be a list of strings", path=path)
    return tuple(value)


def dns1123_label(name: Any, path: str) -> str:
    if not isinstance(name, str) or len(name) > 63 or not _DNS1123_LABEL.match(name):
        raise ModelError(f"{name!r} is not a valid name: use at most 63 lower-case letters, digits "
                         "and '-', starting and ending with a letter or digit", path=path)
    return name


def dns1123_subdomain(name: Any, path: str) -> str:
    if not isinstance(name, str) or len(name) > 253 or not all(
            _DNS1123_LABEL.match(part) for part in name.split(".")):
        raise ModelError(f"{name!r} is not a valid name: use lower-case letters, digits, '-' and '.', "
                         "starting and ending with a letter or digit", path=path)
    return name


def dns1035_label(name: Any, path: str) -> str:
    if not isinstance(name, str) or len(name) > 63 or not _DNS1035_LABEL.match(name):
        raise ModelError(f"{name!r} is not a valid Service name: use at most 63 lower-case letters, "
                         "digits and '-', starting with a letter", path=path)
    return name


def label_key(key: Any, path: str) -> str:
    if not isinstance(key, str) or not key:
        raise ModelError(f"label key {key!r} must be a non-empty string", path=path)
    prefix, slash, name = key.rpartition("/")
    if slash:  # an empty prefix ("/a") is invalid too
        dns1123_subdomain(prefix, path)
    if len(name) > 63 or not _LABEL_NAME.match(name):
        raise ModelError(f"label key {key!r} is invalid: the name part must be at most 63 letters, "
                         "digits, '-', '_' or '.', starting and ending with a letter or digit", path=path)
    return key


def label_value(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ModelError(f"label value {value!r} must be a string: quote it, e.g. \"{value}\"", path=path)
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        raise ModelError(f"label value {value!r} is invalid: at most 63 letters, digits, '-', '_' or '.', "
                         "starting and ending with a letter or digit (or empty)", path=path)
    return value


def labels(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    node = FieldMap(value, path, what="a map of labels")
    return {label_key(k, node.at(str(k))): label_value(v, node.at(str(k))) for k, v in value.items()}


def port_number(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ModelError(f"{value!r} is not a valid port number: must be between 1 and 65535", path=path)
    return value


def port_name(value: Any, path: str) -> str:
    if (not isinstance(value, str) or len(value) > 15 or not _IANA_SVC.match(value)
            or "--" in value or not re.search("[a-z]", value)):
        raise ModelError(f"{value!r} is not a valid port name: at most 15 lower-case letters, digits "
                         "and '-', with at least one letter, no '--', not starting or ending with '-'",
                         path=path)
    return value


def int_or_port_name(value: Any, path: str) -> int | str:
    return port_name(value, path) if isinstance(value, str) else port_number(value, path)


def protocol(value: Any, path: str) -> str:
    if value is None:
        return "TCP"
    if value not in ("TCP", "UDP", "SCTP"):
        hint = f"; did you mean {value.upper()!r}?" if isinstance(value, str) and value.upper() in (
            "TCP", "UDP", "SCTP") else ""
        raise ModelError(f"unsupported protocol {value!r}: must be TCP, UDP or SCTP{hint}", path=path)
    return value


def cidr(value: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str) or "/" not in value:
        raise ModelError(f"{value!r} is not a CIDR: write an address and a prefix length, "
                         "e.g. 10.0.0.0/16", path=path)
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ModelError(f"{value!r} is not a valid CIDR ({exc})", path=path) from exc


def ip_address(value: Any, path: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise ModelError(f"{value!r} is not a valid IP address", path=path) from exc


def one_of(value: Any, choices: Iterable[str], path: str) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ModelError(f"unsupported value {value!r}: must be one of {', '.join(choices)}", path=path)
    return value
