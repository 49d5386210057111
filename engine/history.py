"""What earlier builds left, as `filmc plan` reads it (compiler.plan.History).

    with open_history(program) as history:    # None when the project was never built
        plan = make_plan(program, history, ...)

The action cache from the store, the last build's records from the project's
state, the running paid jobs from the journal: read only, while a build may be
writing (SQLite WAL; the journal is append-only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .journal import NAME as JOURNAL
from .journal import read_open
from .state import State, state_dir
from .store import Store, location


class History:
    def __init__(self, store: Store | None, state: State | None, journal: Path) -> None:
        self.store, self.state, self.journal = store, state, journal

    def actions_present(self, keys: Iterable[str]) -> set[str]:
        return self.store.actions_present(keys) if self.store is not None else set()

    def last_keys(self, nodes: Iterable[str]) -> dict[str, str]:
        return self.state.last_keys(nodes) if self.state is not None else {}

    def last_records(self, nodes: Iterable[str]) -> dict[str, tuple[str, dict]]:
        return self.state.last_records(nodes) if self.state is not None else {}

    def objects_present(self, digests: Iterable[str]) -> set[str]:
        if self.store is None:
            return set()
        return {d for d in digests if self.store.objects.exists(d)}

    def fallbacks(self, keys: Iterable[str]) -> dict[str, dict]:
        """key → {"from", "to", "refused", "cost"} of the steps a fallback backend made."""
        if self.store is None:
            return {}
        out = {}
        for key, action in self.store.get_actions(keys).items():
            fell = action.meta.get("fallback")
            if fell:
                out[key] = {**fell, "to": action.meta.get("backend"),
                            "cost": action.meta.get("cost")}
        return out

    def durations(self) -> dict[tuple[str, str], float]:
        """(backend, step kind) → the median seconds of its most recent steps run."""
        return self.store.durations() if self.store is not None else {}

    def running(self) -> set[str]:
        """Keys of jobs a service accepted (a job an earlier build was still submitting may
        be submitted again, and is priced as new)."""
        return {k for k, job in read_open(self.journal).items() if job.op == "accepted"}


@contextlib.contextmanager
def open_history(program: Any) -> Iterator[History | None]:
    root = Path(program.root)
    store = Store.open(location(root, program.store))
    try:
        state = State.open(root)
        try:
            if store is None and state is None:
                yield None
            else:
                yield History(store, state, state_dir(root) / JOURNAL)
        finally:
            if state is not None:
                state.close()
    finally:
        if store is not None:
            store.close()
