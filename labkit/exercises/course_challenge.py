"""The challenge of notebook 06: secure a three-tier shop (world, expectations, hints, solution).

Owns this content only (the id is stable). Its world is the exact YAML the notebook applies
(a unit test holds them equal). The expectations judge each tier from its own side: probes
from the check's fresh pods (a second frontend, a new pod of shop that is no tier, a new pod
of guest, a pod in a new namespace) as well as the scenario's, on the serving and the metrics
ports, both what must connect and what must not. The solution's first policy is the
notebook's starter ``default-deny``, so applying it replaces the learner's draft.
"""
from __future__ import annotations

from labkit.exercises.core import Exercise
from labkit.exercises.expect import Reach, WouldDrop
from labkit.exercises.visitors import NEW, Visitor

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
spec: {containers: [{name: app, ports: [{containerPort: 80, name: http}, {containerPort: 9113, name: metrics}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: shop, labels: {app: backend, tier: api}}
spec: {containers: [{name: app, ports: [{containerPort: 8080, name: http}, {containerPort: 9090, name: metrics}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db, tier: data}}
spec: {containers: [{name: app, ports: [{containerPort: 5432, name: postgres}, {containerPort: 9187, name: metrics}]}]}
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
    keep_world=True,
    visitors=(Visitor("@frontend-2", "shop", (("app", "frontend"), ("tier", "web"))),
              Visitor("@shop-pod", "shop"),
              Visitor("@guest-pod", "guest"),
              Visitor("@outsider", NEW)),
    expectations=(
        Reach("internet", "198.18.0.1", 30080, True, "customers on the internet reach the frontend (NodePort 30080)"),
        Reach("shop/frontend", "backend", 8080, True, "the frontend calls the backend by name (backend:8080)"),
        Reach("@frontend-2", "backend", 8080, True, "a second frontend replica calls the backend too"),
        Reach("shop/backend", "db", 5432, True, "the backend queries the database by name (db:5432)"),
        Reach("shop/backend", "203.0.113.10", 443, True,
              "the backend reaches the payment provider 203.0.113.10:443"),
        Reach("shop/frontend", "db", 5432, False, "the frontend cannot skip a tier: db:5432 is blocked for it"),
        Reach("shop/frontend", "shop/backend", 9090, False,
              "the frontend reaches the backend on 8080 only, not on its metrics port 9090"),
        Reach("shop/backend", "shop/db", 9187, False, "the backend reaches the database on 5432 only, not on 9187"),
        Reach("guest/intruder", "backend.shop", 8080, False, "a pod of another namespace cannot reach the backend"),
        Reach("@guest-pod", "db.shop", 5432, False, "a new pod in guest cannot reach the database"),
        Reach("@outsider", "backend.shop", 8080, False, "a pod in a new namespace cannot reach the backend"),
        Reach("@outsider", "shop/db", 5432, False, "a pod in a new namespace cannot reach the database"),
        Reach("@shop-pod", "backend", 8080, False, "a new pod of shop that is no tier cannot reach the backend"),
        Reach("@shop-pod", "db", 5432, False, "a new pod of shop that is no tier cannot reach the database"),
        Reach("shop/db", "203.0.113.10", 443, False, "the database cannot send anything to the internet"),
        Reach("shop/frontend", "203.0.113.10", 443, False, "the frontend cannot send anything to the internet"),
        Reach("shop/backend", "203.0.113.10", 80, False,
              "the backend talks to the payment provider over HTTPS only: 203.0.113.10:80 is blocked"),
        Reach("shop/backend", "@outsider", 443, False,
              "the backend's 443 goes to the payment provider only, not to a pod in a new namespace"),
        Reach("shop/backend", "@outsider", 5432, False,
              "the backend reaches the database, not any pod on 5432 (one in a new namespace)"),
        Reach("shop/frontend", "@outsider", 8080, False,
              "the frontend reaches the backend, not any pod on 8080"),
        Reach("guest/intruder", "shop/frontend", 9113, False,
              "the frontend's metrics port 9113 is closed to other namespaces (only port 80 is public)"),
        Reach("shop/backend", "shop/frontend", 9113, False, "the frontend's metrics port 9113 is closed to the backend"),
        Reach("shop/db", "@outsider", 53, False, "the database sends no DNS-port traffic anywhere but kube-dns",
              "UDP"),
        Reach("shop/frontend", "@outsider", 53, False, "the frontend sends no DNS-port traffic anywhere but kube-dns",
              "UDP"),
        WouldDrop("shop/backend", "198.51.100.7", 443, "the backend's 443 goes to the payment provider only: its "
                  "policies would drop HTTPS to any other internet address (198.51.100.7; judged from the policies)"),
        WouldDrop("shop/db", "8.8.8.8", 53, "the database sends nothing out, not even DNS to an outside resolver "
                  "(8.8.8.8:53/UDP, judged from the policies)", "UDP"),
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

