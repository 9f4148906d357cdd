"""The docker backend: nodes, pods and kernel rules on a Docker engine (imports docker-py lazily)."""
from labkit.runtime.docker.backend import DockerBackend

__all__ = ["DockerBackend"]
