"""The installed backend adapters, by type: entry points in the `filmc.backends` group.

The core never imports a service module by name.  filmc's own adapters are
declared in its pyproject.toml like anyone else's; a third-party package adds
its own entry point, or a project names an adapter in its own code with
`type = "package.module:Class"`.

    installed()            {"comfyui": EntryPoint, "local": ..., "openai": ...}
    adapter_class("openai")   the class (imported now); NotInstalled if none
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import EntryPoint, entry_points

from .protocol import Adapter, BackendError

GROUP = "filmc.backends"
HOW_TO_GET = ("an adapter for another service is a Python package that registers a "
              "`filmc.backends` entry point (see docs/backends.md); `filmc build --offline` "
              "renders every step as an animatic meanwhile")


class NotInstalled(BackendError):
    """No adapter of a type is installed (or `package.module:Class` cannot be loaded)."""


@functools.cache
def installed() -> dict[str, EntryPoint]:
    """Adapter type → its entry point, for every installed adapter."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def installed_list() -> str:
    return ", ".join(f"`{n}`" for n in sorted(installed())) or "none"


@functools.cache
def adapter_class(type_name: str) -> type[Adapter]:
    """The adapter class of a type: an installed entry point, or `package.module:Class` for
    an adapter in the project's own code (on the Python path)."""
    if ":" in type_name:
        module, _, attr = type_name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except Exception as e:  # the project's own code may fail in any way: say so
            raise NotInstalled(f"cannot load backend adapter `{type_name}`: "
                               f"{type(e).__name__}: {e}") from None
    else:
        ep = installed().get(type_name)
        if ep is None:
            raise NotInstalled(f"no backend adapter of type `{type_name}` is installed "
                               f"(installed: {installed_list()})")
        try:
            cls = ep.load()
        except Exception as e:  # a broken third-party package must not crash filmc
            raise NotInstalled(f"the backend adapter `{type_name}` ({ep.value}) cannot be "
                               f"loaded: {type(e).__name__}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise NotInstalled(f"`{type_name}` is not a filmc backend adapter "
                           f"(a subclass of filmc.backends.protocol.Adapter)")
    return cls
