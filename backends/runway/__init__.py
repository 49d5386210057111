"""The `runway` backend: Runway's API for clips and reference-tagged images (adapter.py)."""

from .adapter import Runway

__all__ = ["Runway"]
