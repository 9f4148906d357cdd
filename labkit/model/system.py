"""The objects every lab's cluster has from the start: the DNS pod, the kube-dns Service and the
``kubernetes`` Service of namespace ``default``.

Owns their shape, including the DNS pod's command (dnsmasq restarted by a shell loop, so
that records are reloaded by rewriting the config file and stopping dnsmasq).
"""
from __future__ import annotations

from labkit.model import addressing as addr
from labkit.model.objects import Container, ContainerPort, Pod, PodSpec, Service, ServicePort

DNS_LABELS = {"k8s-app": "kube-dns"}
DNS_CONF_PATH = "/etc/labkit/dnsmasq.conf"
DNS_PID_PATH = "/run/labkit-dns.pid"
DNS_COMMAND = (
    "sh", "-c",
    f"mkdir -p /etc/labkit; [ -f {DNS_CONF_PATH} ] || printf 'no-resolv\\nno-hosts\\naddress=/#/\\n' > {DNS_CONF_PATH}; "
    f"while :; do dnsmasq --keep-in-foreground --conf-file={DNS_CONF_PATH} & echo $! > {DNS_PID_PATH}; "
    "wait $!; sleep 0.05; done",
)
SYSTEM_OBJECTS = {("Pod", "kube-system/coredns"): "is part of the lab's cluster DNS",
                  ("Service", "kube-system/kube-dns"): "is part of the lab's cluster DNS",
                  ("Service", "default/kubernetes"): "is part of every cluster (the API server's Service)"}


def is_system(kind: str, ref: str) -> bool:
    """True for the objects every lab has from the start (not the learner's)."""
    return (kind, ref) in SYSTEM_OBJECTS


# labkit runs no API server: default/kubernetes has its ClusterIP and DNS name, and no endpoints.
NO_API_SERVER = ("labkit runs no API server: kubernetes.default has a ClusterIP and a DNS name but no endpoints, "
                 "so connecting to it is refused, as for any Service without endpoints")


def dns_pod() -> Pod:
    container = Container("coredns", command=DNS_COMMAND, serves=True,
                          ports=(ContainerPort(53, "UDP", "dns"), ContainerPort(53, "TCP", "dns-tcp")))
    return Pod("kube-system", "coredns", dict(DNS_LABELS), PodSpec((container,), addr.node_name(1)))


def kubernetes_service() -> Service:
    """``default/kubernetes``: in a real cluster its endpoint is the API server (port 6443)."""
    return Service("default", "kubernetes", {"component": "apiserver", "provider": "kubernetes"}, "ClusterIP",
                   None, (ServicePort(443, "TCP", "https", 6443),), addr.KUBERNETES_SERVICE_IP)


def dns_service() -> Service:
    return Service("kube-system", "kube-dns", dict(DNS_LABELS), "ClusterIP", dict(DNS_LABELS),
                   (ServicePort(53, "UDP", "dns"), ServicePort(53, "TCP", "dns-tcp")), addr.DNS_SERVICE_IP)
