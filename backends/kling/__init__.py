"""The `kling` backend: Kling's image-to-video and image API (adapter.py), its requests
(bodies.py), its tokens, error codes and task records (api.py)."""

from .adapter import Kling

__all__ = ["Kling"]
