"""What earlier builds left, as `filmc plan` reads it (compiler.plan.History).

    with open_history(program) as history:    # None: never built, and no remote cache
        plan = make_plan(program, history, ...)

The action cache from the store, the last build's records from the project's
state, the running paid jobs from the journal: read only, while a build may be
writing (SQLite WAL; the journal is append-only).  And the team's remote cache
(`[cache] remote`, docs/team.md), as a build reads through it: a step whose action
it holds is cached, not run, and costs nothing.  It is listed once a plan (`ac/`:
one request a thousand actions on S3), never asked step by step; pinned outputs the
local store lacks are asked about one by one (there are few).  A remote that cannot
be read leaves the plan to the local store, and `shared_cache()` says why.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..compiler.plan import SharedCache
from .journal import NAME as JOURNAL
from .journal import read_open
from .remotecache import Remote, RemoteError, open_remote
from .state import State, state_dir
from .store import Store, location

# How long a process (the language server, hovering shot after shot) reuses a listing
# of the remote's actions, or its failure to list them, before it asks again.
LISTING_SECONDS = 30.0
_listings: dict[tuple[str, ...], tuple[float, frozenset[str] | RemoteError]] = {}


class RemoteView:
    """The team's remote cache as a plan reads it: which actions it holds (one listing,
    made when first asked), which objects; and, once a read failed, why (nothing more is
    asked of it)."""

    def __init__(self, url: str, remote: Remote | None, problem: str | None = None,
                 memo: tuple[str, ...] = ()) -> None:
        self.url, self.remote, self.problem, self.memo = url, remote, problem, memo
        self._keys: frozenset[str] | None = None

    def keys(self) -> frozenset[str]:
        """The keys of every action the remote holds; none when it cannot be read."""
        if self._keys is None and self.problem is None and self.remote is not None:
            got = _listings.get(self.memo) if self.memo else None
            if got is None or got[0] < time.monotonic():
                try:
                    self.remote.ready()
                    listed: frozenset[str] | RemoteError = frozenset(self.remote.action_keys())
                except RemoteError as e:
                    listed = e
                got = (time.monotonic() + LISTING_SECONDS, listed)
                if self.memo:
                    _listings[self.memo] = got
            if isinstance(got[1], RemoteError):
                self.problem = got[1].message
            else:
                self._keys = got[1]
        return self._keys or frozenset()

    def objects_present(self, digests: Iterable[str]) -> set[str]:
        """Those of `digests` the remote holds (none when it cannot be read)."""
        digests = set(digests)
        if not digests or self.remote is None:
            return set()
        self.keys()  # one listing first: a remote that cannot be read is asked nothing more
        if self.problem is not None:
            return set()
        try:
            return self.remote.objects_present(digests)
        except RemoteError as e:
            self.problem = e.message
            return set()


def remote_view(program: Any, environ: Any = None) -> RemoteView | None:
    """The project's remote cache (`[cache] remote` in its filmc.toml, which the compile
    read: `Program.cache`), not yet read; None when it has none."""
    root = Path(program.root)
    cache = program.cache
    if cache is None:
        return None
    env = os.environ if environ is None else environ
    memo = (cache.remote, str(root.resolve()), env.get(cache.endpoint_env) or "")
    try:
        return RemoteView(cache.remote, open_remote(cache, root, env, patient=False), memo=memo)
    except RemoteError as e:
        return RemoteView(cache.remote, None, e.message)
    except ValueError as e:  # boto3 refuses the endpoint's URL
        return RemoteView(cache.remote, None, f"{e} (the endpoint in `{cache.endpoint_env}`)")


class History:
    def __init__(self, store: Store | None, state: State | None, journal: Path,
                 remote: RemoteView | None = None) -> None:
        self.store, self.state, self.journal = store, state, journal
        self.remote = remote
        self._asked: set[str] = set()  # keys looked up in the remote
        self._shared: set[str] = set()  # those only the remote holds
        self._asked_objects: set[str] = set()
        self._shared_objects: set[str] = set()

    def actions_present(self, keys: Iterable[str]) -> set[str]:
        """The keys whose action a build finds: in the local store, or in the remote cache
        (which a build reads through)."""
        keys = set(keys)
        local = self.store.actions_present(keys) if self.store is not None else set()
        if self.remote is None:
            return local
        shared = (keys - local) & self.remote.keys()
        self._asked |= keys
        self._shared = (self._shared - local) | shared
        return local | shared

    def shared_actions(self, keys: Iterable[str]) -> set[str]:
        """Of `keys`, those whose action only the remote cache holds."""
        keys = set(keys)
        if self.remote is None:
            return set()
        if keys - self._asked:
            self.actions_present(keys - self._asked)
        return keys & self._shared

    def shared_objects(self, digests: Iterable[str]) -> set[str]:
        """Of `digests`, the objects only the remote cache holds."""
        digests = set(digests)
        if self.remote is None:
            return set()
        if digests - self._asked_objects:
            self.objects_present(digests - self._asked_objects)
        return digests & self._shared_objects

    def shared_cache(self) -> SharedCache | None:
        """The remote cache read, and why not where it could not be; None: none is set."""
        if self.remote is None:
            return None
        return SharedCache(self.remote.url, self.remote.problem)

    def last_keys(self, nodes: Iterable[str]) -> dict[str, str]:
        return self.state.last_keys(nodes) if self.state is not None else {}

    def last_records(self, nodes: Iterable[str]) -> dict[str, tuple[str, dict]]:
        return self.state.last_records(nodes) if self.state is not None else {}

    def objects_present(self, digests: Iterable[str]) -> set[str]:
        digests = set(digests)
        local = {d for d in digests if self.store is not None and self.store.objects.exists(d)}
        if self.remote is None:
            return local
        shared = self.remote.objects_present(digests - local)
        self._asked_objects |= digests
        self._shared_objects = (self._shared_objects - local) | shared
        return local | shared

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
def open_history(program: Any, remote: bool = True) -> Iterator[History | None]:
    """`remote`: also read the project's remote cache, if it has one (a clone that never
    built then has a history: what its team made)."""
    root = Path(program.root)
    shared = remote_view(program) if remote else None
    store = Store.open(location(root, program.store))
    try:
        state = State.open(root)
        try:
            if store is None and state is None and shared is None:
                yield None
            else:
                yield History(store, state, state_dir(root) / JOURNAL, shared)
        finally:
            if state is not None:
                state.close()
    finally:
        if store is not None:
            store.close()
