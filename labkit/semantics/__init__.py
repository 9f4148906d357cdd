"""The oracle: what Kubernetes says should happen, with reasons. Imports only ``labkit.model``."""
