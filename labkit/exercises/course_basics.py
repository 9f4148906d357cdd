"""The exercises of notebooks 01, 02 and 03: a sidecar, where a packet goes, a broken Service, DNS names.

Owns this content only (ids are stable). Worlds are the exact YAML their notebooks apply.
01 and 03's debugging exercise are judged like the policy exercises, by what the lab does
(probes from fresh pods, ``exec`` over localhost, endpoints). 02 and 03's DNS exercise are
questions: the learner passes ``answers={...}`` and each answer is judged against what the
lab really does (an address the server saw, a name probed from the client), never against a
fixed string.
"""
from __future__ import annotations

from typing import Any

from labkit.errors import LabkitError
from labkit.exercises.core import Exercise
from labkit.exercises.expect import (Answer, Context, EndpointsOf, KeepsReadiness, Localhost, PodsAnswer, PodShape, Reach,
                                     Serves, address, is_ip)
from labkit.exercises.visitors import NEW, Visitor
from labkit.model import addressing

# ---------------------------------------------------------------------------------------------
# 01 · The pod: a sidecar reached over localhost
POD_WORLD = """\
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Pod
metadata:
  name: duo
  namespace: demo
  labels: {app: duo}
spec:
  containers:
  - name: web
    ports:
    - containerPort: 80
  - name: sidecar
    command: ["sleep", "infinity"]
---
apiVersion: v1
kind: Pod
metadata:
  name: solo
  namespace: demo
  labels: {app: solo}
spec:
  containers:
  - name: app
    ports:
    - containerPort: 80
"""

SIDECAR = Exercise(
    id="01-sidecar",
    title="Give web a metrics sidecar",
    notebook="01-the-pod.ipynb",
    lab_name="pod",
    world=POD_WORLD,
    visitors=(Visitor("@outsider", NEW),),
    expectations=(
        PodShape("demo/pair", (("web", 80), ("metrics", 9100)),
                 "one pod demo/pair with two containers: web serving port 80, metrics serving port 9100"),
        Reach("@outsider", "demo/pair", 80, True, "a pod elsewhere reaches web at the pod's IP, port 80"),
        Reach("@outsider", "demo/pair", 9100, True, "a pod elsewhere reaches the sidecar at the same IP, port 9100"),
        Localhost("demo/pair", "web", 9100, "web reaches its sidecar over localhost:9100"),
        Localhost("demo/pair", "metrics", 80, "the sidecar reaches web over localhost:80"),
    ),
    hints=(
        "Both containers go into ONE pod: the sidecar shares the pod's network namespace only if it is a "
        "container of the same pod (a second pod has its own IP and its own localhost).",
        "Containers of a pod share one port space: the sidecar cannot listen on 80 too (that is the `clash` "
        "pod above). Give it its own port, 9100.",
        "Under `containers:` list two entries: `- name: web` with `ports: [{containerPort: 80}]` and "
        "`- name: metrics` with `ports: [{containerPort: 9100}]`.",
    ),
    solution="""\
apiVersion: v1
kind: Pod
metadata:
  name: pair
  namespace: demo
  labels: {app: pair}
spec:
  containers:
  - name: web
    ports:
    - containerPort: 80
  - name: metrics          # the sidecar: same pod, so same IP and same localhost
    ports:
    - containerPort: 9100  # its own port: one port space per pod
""",
)

# ---------------------------------------------------------------------------------------------
# 02 · Pod to pod: what the receiver sees, and the way there
P2P_WORLD = """\
apiVersion: v1
kind: Namespace
metadata:
  name: net
---
apiVersion: v1
kind: Pod
metadata: {name: a1, namespace: net, labels: {app: a1}}
spec:
  nodeName: node-1
  containers:
  - name: app
    ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: a2, namespace: net, labels: {app: a2}}
spec:
  nodeName: node-1
  containers:
  - name: app
    ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: b1, namespace: net, labels: {app: b1}}
spec:
  nodeName: node-2
  containers:
  - name: app
    ports: [{containerPort: 80}]
"""


def _node_index(lab: Any, pod: str) -> int:
    return int(lab.cluster.node_of(pod).rsplit("-", 1)[1])


def _seen_by_a2(lab: Any) -> str:
    """The source address a2's server saw for a connection from b1, as the probe reports it."""
    result = lab.probe("net/b1", "net/a2", port=80)
    if not result.ok or not result.client_ip:
        raise LabkitError(f"b1 cannot reach a2 on port 80 ({result.error}): the lab is not as the notebook made "
                          "it; run its cells again")
    return result.client_ip


def _judge_seen(lab: Any, value: Any) -> tuple[bool, str]:
    seen, answer = _seen_by_a2(lab), address(value)
    if answer == seen:
        return True, f"a2's server saw {seen}, b1's own pod IP: no NAT between pods, even across nodes"
    if answer == addressing.node_ip(_node_index(lab, "net/b1")):
        return False, "that is node-2's address: would the node rewrite the source? Probe b1 -> a2 and look at what a2 saw"
    if answer == addressing.node_gateway(_node_index(lab, "net/b1")):
        return False, "that is b1's gateway (cni0 on node-2): it forwards the packet, it does not rewrite it"
    return False, "that is not the address a2's server saw (probe b1 -> a2 and read what the server reports)"


def _judge_gateway(lab: Any, value: Any) -> tuple[bool, str]:
    gateway, answer = addressing.node_gateway(_node_index(lab, "net/b1")), address(value)
    if answer == gateway:
        return True, f"b1's default route goes via {gateway}, cni0 on node-2"
    if answer == lab.pod_ip("net/a2"):
        return False, "b1 never sends to a2 directly: its eth0 is a /32 (look at `ip route` in b1)"
    return False, "not b1's default gateway (run `ip route` in net/b1)"


def _judge_node(lab: Any, value: Any) -> tuple[bool, str]:
    node, answer = addressing.node_ip(_node_index(lab, "net/a2")), address(value)
    cidr = addressing.node_pod_cidr(_node_index(lab, "net/a2"))
    if answer == node:
        return True, f"node-2 routes {cidr} to {node}, node-1's address on the node network"
    if answer == lab.pod_ip("net/a2"):
        return False, f"node-2 routes a whole range ({cidr}) to the node that owns it: which address has that node?"
    return False, f"not the next hop node-2 uses for {cidr} (lab.exec_node('node-2', ['ip', 'route']))"


NO_NAT = Exercise(
    id="02-no-nat",
    title="Follow a packet from b1 back to a2",
    notebook="02-pod-to-pod.ipynb",
    lab_name="p2p",
    nodes=2,
    world=P2P_WORLD,
    expectations=(
        Answer("source_seen_by_a2", "the source address a2's server saw when b1 connected", _judge_seen, _seen_by_a2),
        Answer("b1_next_hop", "the first hop of b1's packet (b1's default gateway)", _judge_gateway,
               lambda lab: addressing.node_gateway(_node_index(lab, "net/b1"))),
        Answer("node_2_sends_a2_range_to", "the address node-2 forwards a2's pod range to", _judge_node,
               lambda lab: addressing.node_ip(_node_index(lab, "net/a2"))),
    ),
    hints=(
        "A probe's result says what the server saw: lab.probe('net/b1', 'net/a2', port=80).client_ip.",
        "The first hop is in b1's own routing table: lab.exec('net/b1', ['ip', 'route']).",
        "Node-2 knows which node owns each pod range: lab.exec_node('node-2', ['ip', 'route']) shows the route "
        "for a2's range (10.244.1.0/24) and the node address it goes to.",
    ),
    solution="""\
answers = {
    "source_seen_by_a2": lab.probe("net/b1", "net/a2", port=80).client_ip,  # b1's own pod IP: no NAT
    "b1_next_hop": "10.244.2.1",                # `ip route` in b1: default via 10.244.2.1 (cni0, node-2)
    "node_2_sends_a2_range_to": "198.18.0.1",   # node-2: 10.244.1.0/24 via 198.18.0.1 (node-1)
}
""",
)

# ---------------------------------------------------------------------------------------------
# 03 · Services: debug a broken Service; DNS names across namespaces
STORE_WORLD = """\
apiVersion: v1
kind: Namespace
metadata: {name: store}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: catalog, namespace: store}
spec:
  replicas: 2
  selector:
    matchLabels: {app: catalog}
  template:
    metadata:
      labels: {app: catalog, tier: backend}
    spec:
      containers:
      - name: app
        ports: [{containerPort: 8080, name: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, namespace: store}
spec:
  replicas: 2
  selector:
    matchLabels: {app: orders}
  template:
    metadata:
      labels: {app: orders, tier: backend}
    spec:
      containers:
      - name: app
        ports: [{containerPort: 8080, name: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: search, namespace: store}
spec:
  replicas: 2
  selector:
    matchLabels: {app: search}
  template:
    metadata:
      labels: {app: search, tier: backend}
    spec:
      containers:
      - name: app
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          tcpSocket: {port: 8081}
          periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: store, labels: {app: client}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: store}
spec:
  selector: {app: catalgo}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: store}
spec:
  selector: {app: orders}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: search, namespace: store}
spec:
  selector: {app: search}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: store}
spec:
  selector: {app: catalog}
  ports: [{port: 80, targetPort: http}]
"""

DEBUG_SERVICE = Exercise(
    id="03-debug-service",
    title="Debug three broken Services",
    notebook="03-services.ipynb",
    lab_name="svc",
    world=STORE_WORLD,
    visitors=(Visitor("@outsider", NEW),),
    expectations=(
        Serves("store/client", "catalog", 80, "store/catalog", "store/client reaches catalog:80, answered by catalog's pods"),
        Serves("store/client", "orders", 80, "store/orders", "store/client reaches orders:80, answered by orders' pods"),
        Serves("store/client", "search", 80, "store/search", "store/client reaches search:80, answered by search's pods"),
        Serves("@outsider", "catalog.store", 80, "store/catalog",
               "a pod in another namespace reaches catalog.store:80 too"),
        EndpointsOf("store/catalog", "store/catalog", "catalog's endpoints are exactly its pods, all ready"),
        EndpointsOf("store/orders", "store/orders", "orders' endpoints are exactly its pods, all ready"),
        EndpointsOf("store/search", "store/search", "search's endpoints are exactly its pods, all ready"),
        KeepsReadiness("store/search", "the search pods keep a readiness probe (fix it, do not delete it)"),
        PodsAnswer("store/client", "store/catalog", 8080, "the catalog pods still serve on 8080"),
        PodsAnswer("store/client", "store/orders", 8080, "the orders pods still serve on 8080 (fix the Service, "
                   "not the app)"),
        PodsAnswer("store/client", "store/search", 8080, "the search pods still serve on 8080"),
        Serves("store/client", "web", 80, "store/catalog", "store's own web Service, which works, keeps working"),
    ),
    hints=(
        "Follow the 'Debug Services' steps for each Service: does it have endpoints (lab.endpoints('store/catalog'))? "
        "No endpoints at all means the selector matches no pod: compare it with the pods' labels.",
        "Endpoints there but the connection is refused: the Service sends traffic to a port nothing listens on. "
        "Compare the Service's targetPort with the containerPort the pods declare (a name like `http` is safest).",
        "Endpoints listed as 'not ready': the pods run but fail their readinessProbe. lab.readiness('store/search-…') "
        "says why; which port does the probe check, and which port does the container serve?",
        "Fix the Services with lab.apply of corrected YAML (same names), and the search Deployment's "
        "readinessProbe port. Do not widen a selector to `tier: backend`: every backend would answer.",
    ),
    solution="""\
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: store}
spec:
  selector: {app: catalog}          # was app: catalgo, which matches no pod
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: store}
spec:
  selector: {app: orders}
  ports: [{port: 80, targetPort: http}]   # was 80: the pods listen on 8080 (named http)
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: search, namespace: store}
spec:
  replicas: 2
  selector:
    matchLabels: {app: search}
  template:
    metadata:
      labels: {app: search, tier: backend}
    spec:
      containers:
      - name: app
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          tcpSocket: {port: 8080}   # was 8081, where nothing listens
          periodSeconds: 1
""",
)


def _reaches_shop_web(lab: Any, name: str) -> tuple[bool, str]:
    """Probe ``name`` from store/client: every answer must come from a pod of Deployment shop/web."""
    seen = Serves("store/client", name, 80, "shop/web", "", spread=False,
                  wrong_pods="that is not shop's web (a short name is looked up in the client's own namespace "
                             "first)").judge(Context(lab))
    return seen.passed, seen.detail


def _judge_short(lab: Any, value: Any) -> tuple[bool, str]:
    name = str(value).strip().rstrip(".").lower()  # DNS names are case-insensitive
    if is_ip(name):
        return False, "that is an address: give a DNS name (addresses change, names stay)"
    ok, detail = _reaches_shop_web(lab, name)
    if ok and name.count(".") > 1:
        return False, detail + ", but a shorter name works as well"
    return ok, detail


def _judge_full(lab: Any, value: Any) -> tuple[bool, str]:
    name = str(value).strip().rstrip(".").lower()
    if not name.endswith(f".svc.{addressing.CLUSTER_DOMAIN}"):
        return False, f"a fully qualified Service name ends with .svc.{addressing.CLUSTER_DOMAIN}"
    return _reaches_shop_web(lab, name)


DNS_NAMES = Exercise(
    id="03-dns-names",
    title="Call shop's web from namespace store",
    notebook="03-services.ipynb",
    lab_name="svc",
    world=STORE_WORLD,
    expectations=(
        Answer("shortest_name", "the shortest name with which store/client reaches shop's web Service", _judge_short,
               lambda lab: "web.shop"),
        Answer("fully_qualified_name", "the fully qualified name of shop's web Service", _judge_full,
               lambda lab: f"web.shop.svc.{addressing.CLUSTER_DOMAIN}"),
    ),
    hints=(
        "Try `web` from store/client first: who answers? Namespace store has a Service called web too.",
        "A short name is tried with the client's search suffixes, its own namespace first "
        "(`cat /etc/resolv.conf` in store/client). Add the namespace: <service>.<namespace>.",
        f"The full name is <service>.<namespace>.svc.{addressing.CLUSTER_DOMAIN}.",
    ),
    solution="""\
answers = {
    "shortest_name": "web.shop",                            # `web` alone is store's own web Service
    "fully_qualified_name": "web.shop.svc.cluster.local",
}
""",
)

BASIC_EXERCISES = (SIDECAR, NO_NAT, DEBUG_SERVICE, DNS_NAMES)
