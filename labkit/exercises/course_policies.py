"""The NetworkPolicy exercises of notebooks 04 and 05: worlds, expectations, hints, solutions.

Owns this content only (ids are stable: notebooks and teachers' notes use them). Each world
is the exact YAML its notebook applies and each ``provided`` policy one the notebook applied
before the exercise (unit tests hold them equal). The expectations judge the property the
task states from the target's side: probes from the check's fresh pods (a new pod of each
namespace involved and of a new namespace) as well as the scenario's, on every port the
targets serve, both what must connect and what must not. Reference solutions use the names
of the notebooks' starter policies, so applying one replaces the learner's draft.
"""
from __future__ import annotations

from labkit.exercises.core import Exercise
from labkit.exercises.expect import Reach, Resolves, WouldDrop
from labkit.exercises.visitors import NEW, Visitor

# ---------------------------------------------------------------------------------------------
# 04 · NetworkPolicies 1: selectors, namespaces, AND versus OR
NP1_WORLD = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: monitoring, labels: {team: monitoring}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {team: dev}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: prometheus, namespace: monitoring, labels: {app: prometheus}}
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: grafana, namespace: monitoring, labels: {app: grafana}}
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: prometheus, namespace: dev, labels: {app: prometheus}}
spec:
  containers:
  - name: app
    ports: [{containerPort: 80, name: http}, {containerPort: 8080, name: debug}, {containerPort: 5353, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: tester, namespace: dev, labels: {app: tester}}
spec:
  containers:
  - name: app
    ports: [{containerPort: 80, name: http}, {containerPort: 8080, name: debug}, {containerPort: 5353, protocol: UDP}]
"""

NP1_PROVIDED = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: shop
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: api-from-web
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: api}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: web}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-monitoring
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {team: monitoring}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: api-from-prometheus
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: api}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {team: monitoring}
      podSelector:
        matchLabels: {app: prometheus}
"""

DEV_SANDBOX = Exercise(
    id="04-dev-sandbox",
    title="Fence in the dev namespace",
    notebook="04-network-policies-1.ipynb",
    lab_name="np1",
    world=NP1_WORLD,
    provided=NP1_PROVIDED,
    keep_world=True,
    visitors=(Visitor("@dev-new", "dev", (("app", "newcomer"),)),
              Visitor("@prom-2", "monitoring", (("app", "prometheus"),)),
              Visitor("@exporter", "monitoring", (("app", "exporter"),)),
              Visitor("@shop-pod", "shop"),
              Visitor("@outsider", NEW),
              Visitor("@fake-prom", NEW, (("app", "prometheus"),))),
    visitor_namespace_labels=(("team", "monitoring"),),  # a namespace that only claims to be monitoring
    expectations=(
        Reach("dev/tester", "dev/prometheus", 80, True, "pods in dev reach each other (tester -> prometheus on 80/TCP)"),
        Reach("dev/prometheus", "dev/tester", 8080, True,
              "pods in dev reach each other on every port they serve (prometheus -> tester on 8080/TCP)"),
        Reach("dev/tester", "dev/prometheus", 5353, True, "pods in dev reach each other over UDP too (5353/UDP)",
              "UDP"),
        Reach("@dev-new", "dev/tester", 80, True, "a new pod in dev reaches dev/tester"),
        Reach("dev/tester", "@dev-new", 80, True, "dev/tester reaches a new pod in dev"),
        Reach("monitoring/prometheus", "dev/tester", 80, True,
              "the prometheus of the monitoring namespace can scrape dev/tester"),
        Reach("@prom-2", "dev/prometheus", 80, True, "a second prometheus pod in monitoring can scrape dev too"),
        Reach("monitoring/grafana", "dev/tester", 80, False,
              "grafana, in monitoring but not prometheus, cannot reach dev/tester"),
        Reach("@exporter", "dev/tester", 80, False, "a new pod of monitoring that is not prometheus cannot reach dev/tester"),
        Reach("@fake-prom", "dev/tester", 80, False,
              "a prometheus in a new namespace that merely claims team=monitoring cannot reach dev/tester"),
        Reach("@outsider", "dev/prometheus", 80, False, "a pod in a new namespace cannot reach dev/prometheus on 80/TCP"),
        Reach("@outsider", "dev/tester", 5353, False, "a pod in a new namespace cannot reach dev/tester on 5353/UDP",
              "UDP"),
        Reach("shop/web", "dev/tester", 80, False, "shop/web cannot reach dev/tester"),
        Reach("@shop-pod", "dev/tester", 8080, False, "a new pod in shop cannot reach dev/tester on 8080/TCP"),
        Reach("shop/api", "dev/prometheus", 80, False, "shop/api cannot reach dev/prometheus"),
        Reach("dev/tester", "monitoring/grafana", 80, True,
              "what leaves dev is untouched: dev/tester still reaches monitoring/grafana"),
        Reach("@outsider", "@dev-new", 80, False, "a new pod of dev is fenced in too: a pod in a new namespace "
              "cannot reach it"),
        Reach("@outsider", "dev/prometheus", 8080, False, "a pod in a new namespace cannot reach dev/prometheus on "
              "8080/TCP"),
        Reach("@outsider", "dev/prometheus", 5353, False, "a pod in a new namespace cannot reach dev/prometheus on "
              "5353/UDP", "UDP"),
        Reach("dev/tester", "@outsider", 80, True, "what leaves dev is untouched: dev/tester reaches a pod in a "
              "new namespace"),
        Resolves("dev/tester", "kube-dns.kube-system", "what leaves dev is untouched: its DNS lookups work"),
        Reach("dev/tester", "203.0.113.10", 443, True, "what leaves dev is untouched: the internet"),
    ),
    hints=(
        "Everything happens in namespace dev: one NetworkPolicy in dev that selects every pod there "
        "(podSelector: {}) and lists what may come in.",
        "An empty podSelector inside `from` (with no namespaceSelector) means 'every pod of the policy's "
        "own namespace'. That is the first peer you need.",
        "The scraper must be in the namespace monitoring AND be labelled app=prometheus: put namespaceSelector "
        "and podSelector in the SAME list item (one dash), not in two.",
        "Anyone can label a namespace team=monitoring (Step 3 showed it): select the namespace by the label the "
        "API server sets and nobody can change, kubernetes.io/metadata.name: monitoring.",
    ),
    solution="""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: dev-sandbox
  namespace: dev
spec:
  podSelector: {}            # every pod in dev
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {}        # any pod of dev itself
    - namespaceSelector:     # ... or: in the namespace monitoring (a label nobody can fake)
        matchLabels: {kubernetes.io/metadata.name: monitoring}
      podSelector:           #     AND labelled app=prometheus (same list item)
        matchLabels: {app: prometheus}
""",
)

# ---------------------------------------------------------------------------------------------
# 05 · NetworkPolicies 2: ports, egress, DNS, ipBlock
NP2_WORLD = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {team: ops}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api, version: v1}}
spec:
  containers:
  - name: app
    ports:
    - {containerPort: 8080, name: http-api}
    - {containerPort: 9090, name: metrics}
---
apiVersion: v1
kind: Pod
metadata: {name: api-v2, namespace: shop, labels: {app: api, version: v2}}
spec:
  containers:
  - name: app
    ports:
    - {containerPort: 8081, name: http-api}
    - {containerPort: 9090, name: metrics}
---
apiVersion: v1
kind: Pod
metadata: {name: stream, namespace: shop, labels: {app: stream}}
spec:
  containers:
  - name: app
    ports: [{containerPort: 7000}, {containerPort: 7001}, {containerPort: 7002}, {containerPort: 7010}]
---
apiVersion: v1
kind: Pod
metadata: {name: worker, namespace: shop, labels: {app: worker}}
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: toolbox, namespace: ops, labels: {app: toolbox}}
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  ports: [{port: 80, targetPort: http-api}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"""

NP2_PROVIDED = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: api-from-web
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: api}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: web}
    ports:
    - port: http-api
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: stream-from-ops
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: stream}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: ops}
    ports:
    - protocol: TCP
      port: 7000
      endPort: 7002
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-egress
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Egress]
  egress:
  - to:
    - podSelector:
        matchLabels: {app: api}
    ports:
    - port: http-api
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-allow-dns
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: kube-system}
      podSelector:
        matchLabels: {k8s-app: kube-dns}
    ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-to-internet
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except: [10.0.0.0/8]
    ports:
    - port: 443
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-deny-ingress
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Ingress]
"""

WORKER_EGRESS = Exercise(
    id="05-worker-egress",
    title="Lock down the worker's egress",
    notebook="05-network-policies-2.ipynb",
    lab_name="np2",
    world=NP2_WORLD,
    provided=NP2_PROVIDED,
    keep_world=True,
    visitors=(Visitor("@worker-2", "shop", (("app", "worker"),)),
              Visitor("@shop-pod", "shop"),
              Visitor("@outsider", NEW),
              Visitor("@system-pod", "kube-system", (("app", "metrics-server"),))),
    expectations=(
        Reach("shop/worker", "api", 80, True, "the worker calls the api Service by its name (api:80)"),
        Reach("@worker-2", "api", 80, True, "a second worker pod calls api by its name too"),
        Reach("shop/worker", "203.0.113.10", 443, True, "the worker uploads to the storage host 203.0.113.10:443"),
        Reach("@worker-2", "203.0.113.10", 443, True, "a second worker pod uploads to the storage host too"),
        Reach("shop/worker", "203.0.113.10", 80, False, "the worker cannot use plain HTTP to 203.0.113.10:80"),
        Reach("shop/worker", "203.0.113.10", 443, False, "the upload is HTTPS over TCP: 203.0.113.10:443/UDP is blocked",
              "UDP"),
        Reach("shop/worker", "shop/api", 9090, False, "the worker cannot read the api's metrics port (9090)"),
        Reach("shop/worker", "shop/web", 80, False, "the worker cannot reach shop/web"),
        Reach("shop/worker", "ops/toolbox", 80, False, "the worker cannot reach ops/toolbox"),
        Reach("@worker-2", "ops/toolbox", 80, False, "a second worker pod cannot reach ops/toolbox either"),
        Reach("shop/worker", "@shop-pod", 80, False, "the worker cannot reach a new pod of shop"),
        Reach("shop/worker", "@outsider", 8080, False,
              "the worker reaches the api pods only: not a pod in a new namespace on 8080 (named http-api there too)"),
        Reach("shop/worker", "@outsider", 443, False,
              "the worker reaches only the storage host on 443: not a pod in a new namespace"),
        Reach("shop/worker", "@outsider", 53, False,
              "the worker sends DNS queries to kube-dns only, not to a pod in a new namespace", "UDP"),
        Reach("shop/worker", "@system-pod", 80, False,
              "the worker reaches kube-dns only, not any pod of kube-system (a metrics server, say)"),
        Reach("@shop-pod", "@outsider", 80, True,
              "other pods of shop keep their egress: a new pod of shop reaches a pod in a new namespace"),
        Reach("shop/worker", "shop/api", 8080, True, "the worker reaches every api pod: api on its http-api 8080"),
        Reach("shop/worker", "shop/api-v2", 8081, True, "the worker reaches every api pod: api-v2 on its http-api "
              "8081"),
        Reach("@worker-2", "shop/api-v2", 8081, True, "a second worker pod reaches api-v2 on 8081 too"),
        Reach("shop/worker", "@shop-pod", 8080, False, "the worker reaches the api pods only, not a new pod of shop "
              "on 8080"),
        Reach("@shop-pod", "shop/api", 8080, False, "the api stays closed to the other pods of shop (api-from-web "
              "still decides)"),
        Reach("@outsider", "shop/api-v2", 8081, False, "the api stays closed to other namespaces"),
        WouldDrop("shop/worker", "198.51.100.7", 443, "the worker's 443 goes to the storage host only: its policies "
                  "would drop HTTPS to any other internet address (198.51.100.7; no host answers there, so this is "
                  "judged from the policies)"),
        WouldDrop("shop/worker", "203.0.113.99", 443, "... not even to a neighbour of the storage host "
                  "(203.0.113.99:443, judged from the policies)"),
    ),
    hints=(
        "Start from the draft: a policy selecting app=worker with policyTypes [Egress] denies all its egress. "
        "Then add one egress rule per thing the worker needs.",
        "The worker uses the NAME api: without an egress rule to kube-dns (UDP and TCP 53 to the pods "
        "labelled k8s-app=kube-dns in namespace kube-system) the name never resolves.",
        "Egress to the api pods: the Service sends port 80 to the pods' named port http-api (8080 on api, "
        "8081 on api-v2). Policies see the pod after the Service's DNAT, so allow `port: http-api`, not 80.",
        "The storage host is outside the cluster: use `to: [{ipBlock: {cidr: 203.0.113.10/32}}]` with "
        "`ports: [{port: 443}]`.",
        "Both ends must agree: the api pods are isolated for ingress by `api-from-web` (section 1). Add a "
        "second policy that lets app=worker in on the named port http-api.",
    ),
    solution="""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: worker-egress
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: worker}
  policyTypes: [Egress]
  egress:
  - to:                                  # cluster DNS
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: kube-system}
      podSelector:
        matchLabels: {k8s-app: kube-dns}
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
  - to:                                  # the api pods, on their named port
    - podSelector:
        matchLabels: {app: api}
    ports: [{port: http-api}]
  - to:                                  # the storage host, HTTPS only
    - ipBlock: {cidr: 203.0.113.10/32}
    ports: [{port: 443}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: api-from-worker
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: api}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: worker}
    ports: [{port: http-api}]
""",
)


POLICY_EXERCISES = (DEV_SANDBOX, WORKER_EGRESS)
