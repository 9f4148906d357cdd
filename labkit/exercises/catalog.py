"""The course's exercises: for each, the world it starts from, what must hold, hints, a solution.

Owns the content only (ids are stable: notebooks and teachers' notes use them). Each world
is the exact YAML its notebook applies (a unit test holds them equal), and every
expectation is a probe that the learner's lab must pass or must block. Reference
solutions use the names of the notebooks' starter policies, so applying one replaces the
learner's draft instead of adding to it.
"""
from __future__ import annotations

from labkit.exercises.core import Exercise, Reach

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
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: tester, namespace: dev, labels: {app: tester}}
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
"""

DEV_SANDBOX = Exercise(
    id="04-dev-sandbox",
    title="Fence in the dev namespace",
    notebook="04-network-policies-1.ipynb",
    lab_name="np1",
    world=NP1_WORLD,
    expectations=(
        Reach("dev/tester", "dev/prometheus", 80, True, "pods in dev still reach each other (tester -> prometheus)"),
        Reach("dev/prometheus", "dev/tester", 80, True, "pods in dev still reach each other (prometheus -> tester)"),
        Reach("monitoring/prometheus", "dev/tester", 80, True,
              "the prometheus of the monitoring namespace can scrape dev/tester"),
        Reach("monitoring/grafana", "dev/tester", 80, False,
              "grafana, in monitoring but not prometheus, cannot reach dev/tester"),
        Reach("shop/web", "dev/tester", 80, False, "shop/web cannot reach dev/tester"),
        Reach("shop/api", "dev/prometheus", 80, False, "shop/api cannot reach dev/prometheus"),
    ),
    hints=(
        "Everything happens in namespace dev: one NetworkPolicy in dev that selects every pod there "
        "(podSelector: {}) and lists what may come in.",
        "An empty podSelector inside `from` (with no namespaceSelector) means 'every pod of the policy's "
        "own namespace'. That is the first peer you need.",
        "The scraper must be in a namespace labelled team=monitoring AND be labelled app=prometheus: put "
        "namespaceSelector and podSelector in the SAME list item (one dash), not in two.",
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
    - namespaceSelector:     # ... or: in a namespace labelled team=monitoring
        matchLabels: {team: monitoring}
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

WORKER_EGRESS = Exercise(
    id="05-worker-egress",
    title="Lock down the worker's egress",
    notebook="05-network-policies-2.ipynb",
    lab_name="np2",
    world=NP2_WORLD,
    expectations=(
        Reach("shop/worker", "api", 80, True, "the worker calls the api Service by its name (api:80)"),
        Reach("shop/worker", "203.0.113.10", 443, True, "the worker uploads to the storage host 203.0.113.10:443"),
        Reach("shop/worker", "203.0.113.10", 80, False, "the worker cannot use plain HTTP to 203.0.113.10:80"),
        Reach("shop/worker", "shop/api", 9090, False, "the worker cannot read the api's metrics port (9090)"),
        Reach("shop/worker", "shop/web", 80, False, "the worker cannot reach shop/web"),
        Reach("shop/worker", "ops/toolbox", 80, False, "the worker cannot reach ops/toolbox"),
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

# ---------------------------------------------------------------------------------------------
# 06 · Challenge: secure a three-tier application
THREE_TIER_WORLD = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: guest, labels: {team: guest}}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: shop, labels: {app: frontend, tier: web}}
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: shop, labels: {app: backend, tier: api}}
spec: {containers: [{name: app, ports: [{containerPort: 8080, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db, tier: data}}
spec: {containers: [{name: app, ports: [{containerPort: 5432, name: postgres}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: intruder, namespace: guest, labels: {app: intruder}}
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: frontend, namespace: shop}
spec:
  type: NodePort
  selector: {app: frontend}
  ports: [{port: 80, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: shop}
spec:
  selector: {app: backend}
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports: [{port: 5432, targetPort: postgres}]
"""

THREE_TIER = Exercise(
    id="06-three-tier",
    title="Secure the three-tier shop",
    notebook="06-challenge.ipynb",
    lab_name="challenge",
    world=THREE_TIER_WORLD,
    expectations=(
        Reach("internet", "198.18.0.1", 30080, True, "customers on the internet reach the frontend (NodePort 30080)"),
        Reach("shop/frontend", "backend", 8080, True, "the frontend calls the backend by name (backend:8080)"),
        Reach("shop/backend", "db", 5432, True, "the backend queries the database by name (db:5432)"),
        Reach("shop/backend", "203.0.113.10", 443, True,
              "the backend reaches the payment provider 203.0.113.10:443"),
        Reach("shop/frontend", "db", 5432, False, "the frontend cannot skip a tier: db:5432 is blocked for it"),
        Reach("guest/intruder", "backend.shop", 8080, False, "a pod of another namespace cannot reach the backend"),
        Reach("guest/intruder", "db.shop", 5432, False, "a pod of another namespace cannot reach the database"),
        Reach("shop/db", "203.0.113.10", 443, False, "the database cannot send anything to the internet"),
        Reach("shop/frontend", "203.0.113.10", 443, False, "the frontend cannot send anything to the internet"),
    ),
    hints=(
        "Begin with the starter policy `default-deny`: it selects every pod of shop for Ingress AND Egress. "
        "Everything the shop needs must now be allowed explicitly, on both ends of each connection.",
        "Once egress is isolated, names stop resolving. One policy for every pod of shop (podSelector: {}) "
        "allowing egress to the kube-dns pods of kube-system on UDP and TCP port 53 fixes all of them.",
        "Write one policy per tier (app=frontend, app=backend, app=db), each with the tier's ingress (who may "
        "call it, on which port) and egress (whom it calls). Policies add up; none can take away.",
        "NodePort traffic comes from outside the cluster, and its source address may be rewritten on the way "
        "(kube-proxy SNATs it to the node's address unless externalTrafficPolicy is Local), so do not match on "
        "it: an ingress rule with only `ports: [{port: 80}]` (no `from`) lets everyone in on port 80.",
        "The payment provider is not a pod: the backend needs an egress rule "
        "`to: [{ipBlock: {cidr: 203.0.113.10/32}}]` with `ports: [{port: 443}]`.",
    ),
    solution="""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
  namespace: shop
spec:
  podSelector: {}                      # every pod of shop: nothing in, nothing out ...
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-dns
  namespace: shop
spec:
  podSelector: {}                      # ... except DNS queries to kube-dns
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: kube-system}
      podSelector:
        matchLabels: {k8s-app: kube-dns}
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: frontend
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: frontend}
  policyTypes: [Ingress, Egress]
  ingress:
  - ports: [{port: 80}]                # anyone (the internet via the NodePort) on port 80
  egress:
  - to:
    - podSelector:
        matchLabels: {app: backend}
    ports: [{port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: backend
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: backend}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: frontend}
    ports: [{port: 8080}]
  egress:
  - to:
    - podSelector:
        matchLabels: {app: db}
    ports: [{port: 5432}]
  - to:
    - ipBlock: {cidr: 203.0.113.10/32}  # the payment provider
    ports: [{port: 443}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: db}
  policyTypes: [Ingress]               # its egress stays denied by default-deny
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: backend}
    ports: [{port: 5432}]
""",
)

EXERCISES: dict[str, Exercise] = {e.id: e for e in (DEV_SANDBOX, WORKER_EGRESS, THREE_TIER)}
