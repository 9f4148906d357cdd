"""Pod fields Kubernetes enforces and labkit does not: each is refused, never silently ignored.

Owns the list of such fields and the sentence that says why and what to write instead.
A lab that accepted ``privileged: true`` or a ``hostPath`` volume and ran the pod without
them would teach something false (and a classroom's lab server must never be asked for
them), so each one is a ``ModelError`` naming its field path. ``capabilities.drop`` is the
one security field labkit honours (the container runs without those capabilities).
"""
from __future__ import annotations

from typing import Any

from labkit.errors import ModelError

_WHY = "labkit does not enforce it, so the lab would run without it"

POD_SPEC = {
    "hostNetwork": "pods in a lab always get a network namespace of their own: remove hostNetwork",
    "hostPID": "pods in a lab never share the host's processes: remove hostPID",
    "hostIPC": "pods in a lab never share the host's IPC: remove hostIPC",
    "volumes": "pods in a lab have no volumes (and never a hostPath): remove spec.volumes",
}
CONTAINER = {
    "volumeMounts": "pods in a lab have no volumes: remove volumeMounts",
}
PORT = {
    "hostPort": "labkit publishes no host ports: use a NodePort Service to reach a pod from outside",
    "hostIP": "labkit publishes no host ports: use a NodePort Service to reach a pod from outside",
}
CONTAINER_SECURITY = ("privileged", "capabilities", "allowPrivilegeEscalation", "readOnlyRootFilesystem",
                      "runAsUser", "runAsGroup", "runAsNonRoot", "seLinuxOptions", "seccompProfile",
                      "appArmorProfile", "procMount", "windowsOptions")
CAPABILITIES = frozenset((  # Linux capabilities, as Kubernetes and Docker name them
    "ALL", "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT",
    "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM"))


def refuse(data: dict, path: str, fields: dict[str, str]) -> None:
    for key, why in fields.items():
        if data.get(key) not in (None, False, [], {}):
            raise ModelError(f"{_WHY}: {why}", path=f"{path}.{key}" if path else key)


def pod_security(value: Any, path: str) -> None:
    """A pod's securityContext: refused whole (sysctls, runAsUser, fsGroup, ...), unless empty."""
    if value in (None, {}):
        return
    if not isinstance(value, dict):
        raise ModelError("must be an object", path=path)
    key = sorted(str(k) for k in value)[0]
    raise ModelError(f"{_WHY}: pods in a lab run with labkit's own settings (remove securityContext.{key})",
                     path=f"{path}.{key}")


def container_security(value: Any, path: str) -> tuple[str, ...]:
    """A container's securityContext; returns the capabilities to drop (the one part labkit honours)."""
    if value in (None, {}):
        return ()
    if not isinstance(value, dict):
        raise ModelError("must be an object", path=path)
    for key in value:
        if key not in CONTAINER_SECURITY:
            raise ModelError(f"unknown field {key!r}", path=f"{path}.{key}")
    if value.get("privileged"):
        raise ModelError(f"{_WHY}: lab pods are never privileged (remove privileged: true)",
                         path=f"{path}.privileged")
    for key in CONTAINER_SECURITY[2:]:
        if value.get(key) is not None:
            raise ModelError(f"{_WHY}: remove securityContext.{key}", path=f"{path}.{key}")
    caps = value.get("capabilities") or {}
    if not isinstance(caps, dict):
        raise ModelError("must be an object with add/drop", path=f"{path}.capabilities")
    for key in caps:
        if key not in ("add", "drop"):
            raise ModelError(f"unknown field {key!r}", path=f"{path}.capabilities.{key}")
    if caps.get("add"):
        raise ModelError(f"{_WHY}: lab pods get Kubernetes' default capabilities and no more (remove "
                         "capabilities.add)", path=f"{path}.capabilities.add")
    drop = caps.get("drop") or []
    if not isinstance(drop, list):
        raise ModelError("must be a list of capability names", path=f"{path}.capabilities.drop")
    for i, name in enumerate(drop):
        if not isinstance(name, str) or name.removeprefix("CAP_") not in CAPABILITIES:
            raise ModelError(f"{name!r} is not a Linux capability (e.g. NET_RAW, or ALL)",
                             path=f"{path}.capabilities.drop[{i}]")
    return tuple(name.removeprefix("CAP_") for name in drop)
