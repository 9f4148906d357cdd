"""Kubernetes objects parsed and validated from manifests, and the Cluster aggregate; no I/O."""
