"""The one small protocol every backend follows, and the registry that finds them.

The executor never imports a service module by name: a backend's `type` in
filmc.toml is looked up among the `filmc.backends` entry points (the built-in
`local` one is declared in filmc's own pyproject.toml), so a service adapter
can live in its own package; `type = "package.module:Class"` loads one from the
project's own code.

An adapter is constructed once per build with its configuration, and `run` is
called for each step with the step, the output files of its inputs, and a
private working folder; it returns the files it produced there.  What happens
inside (a local render in a process pool, or submit → poll → download against a
service, see ../shared/BACKENDS.md) is the adapter's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

import attrs

GROUP = "filmc.backends"


class BackendError(Exception):
    """A step failed in its backend: `message` says why, for the build summary."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@attrs.frozen
class Job:
    """One step to run: what it is, what its inputs made, and where to write."""

    step: object  # compiler.graph.Step
    inputs: tuple[tuple[str, tuple[Path, ...]], ...]  # (input node id, its output files)
    workdir: Path
    film: dict  # film-wide facts an adapter may need: width, height, fps, burn_subtitles

    def files_of(self, kind_prefix: str) -> list[Path]:
        """The output files of the inputs whose node id starts with `kind_prefix`."""
        return [p for node, paths in self.inputs if node.startswith(kind_prefix) for p in paths]


class Backend(Protocol):
    type: str

    def __init__(self, name: str, settings: dict, jobs: int) -> None: ...

    async def run(self, job: Job) -> Sequence[Path]: ...

    def close(self) -> None: ...


def available() -> dict[str, object]:
    """Adapter type → entry point, for every installed backend."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load(type_name: str) -> type[Backend]:
    """The adapter class of a type: an installed entry point, or `package.module:Class`
    for an adapter that lives in the user's own code (on the Python path)."""
    if ":" in type_name:
        import importlib

        module, _, attr = type_name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
        except (ImportError, AttributeError) as e:
            raise BackendError(f"cannot load backend adapter `{type_name}`: {e}") from None
    eps = available()
    ep = eps.get(type_name)
    if ep is None:
        known = ", ".join(f"`{n}`" for n in sorted(eps)) or "none"
        raise BackendError(f"no backend adapter of type `{type_name}` is installed "
                           f"(installed: {known}); `filmc build --offline` renders these "
                           f"steps as an animatic instead")
    return ep.load()  # type: ignore[attr-defined,no-any-return]
