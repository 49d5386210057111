"""What a build does with the team's remote cache (engine/remotecache.py).

    shared = Shared(remote, store, config, project="/home/me/wolfpack")
    shared.lookup(keys)            # read-through: remote hits recorded in the local store
    shared.ensure(digests)         # the bytes, when a running step or build/ needs them
    shared.upload(key, ...)        # write-through, in the background, paid steps first
    claim = await shared.claim(key, ...)   # a paid step: claimed once across machines
    shared.drain()                 # the end of the build: what could not be uploaded

The local store stays the base.  A remote hit enters it as an action (its objects
are fetched only when something needs their bytes: "build without the bytes"),
so the build, `filmc plan` and the no-op path all read one local action cache.
Uploads never fail a build: an upload that fails is reported at the end, and the
result stays in the local store for `filmc cache push` to send again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ..backends.protocol import Handle
from .journal import OpenJob
from .remotecache import Corrupt, Lease, Missing, Remote, RemoteError, holder
from .store import Action, Store

UPLOADERS = 4  # uploads in flight at once


@attrs.frozen
class Transfer:
    """Bytes moved by this build, each way."""

    down_objects: int = 0
    down_bytes: int = 0
    up_objects: int = 0
    up_bytes: int = 0
    hits: int = 0  # actions found remotely


class Claim:
    """A paid step this process holds the remote claim of: renewed while the job runs,
    with the job's journal entry shared in it; released once its result is uploaded."""

    def __init__(self, shared: Shared, lease: Lease, took_over: Lease | None) -> None:
        self.shared, self.lease = shared, lease
        self.took_over = took_over  # the expired claim this one replaced, if any
        self._renewer: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()  # a renewal and a shared job, one after the other
        self.lost = False
        self.keep = False  # its result could not be uploaded: left to expire, not released

    @property
    def job(self) -> OpenJob | None:
        """The job a dead holder shared (to poll, never to submit again)."""
        j = self.lease.job
        if not j or not isinstance(j.get("handle"), dict):
            return None
        h = j["handle"]
        return OpenJob(self.lease.key, str(j.get("step", "")), str(j.get("backend", "")),
                       "accepted" if j.get("op") == "accepted" else "submitting",
                       Handle(str(h.get("id")), dict(h.get("data") or {})))

    def start(self) -> None:
        self._renewer = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.shared.lease_s / 3)
            await self._update(None)

    async def _update(self, job: dict | None) -> None:
        if self.lost:
            return
        try:
            async with self._writing:
                got = await asyncio.to_thread(self.shared.remote.renew, self.lease,
                                              self.shared.lease_s, job)
        except RemoteError as e:
            self.shared.note(f"cannot renew the claim on {self.lease.key[:12]}… in "
                             f"{self.shared.remote.url}: {e.message}")
            return
        if got is None:
            if not self.lost:
                self.lost = True
                self.shared.note(f"the claim on {self.lease.key[:12]}… was taken over by "
                                 f"another machine (it polls the same job)")
        else:
            self.lease = got

    async def share(self, op: str, backend: str, step: str, handle: Handle) -> None:
        """The job's journal entry, put in the claim: whoever takes it over re-attaches."""
        await self._update({"op": op, "backend": backend, "step": step,
                            "handle": {"id": handle.id, "data": dict(handle.data)}})

    async def end(self, release: bool) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
        if release and not self.lost:
            try:
                await asyncio.to_thread(self.shared.remote.release, self.lease)
            except RemoteError as e:
                self.shared.note(f"cannot release the claim on {self.lease.key[:12]}…: "
                                 f"{e.message} (it expires by itself)")


class Shared:
    def __init__(self, remote: Remote, store: Store, write: bool, lease_s: float,
                 project: str) -> None:
        self.remote, self.store, self.write = remote, store, write
        self.lease_s, self.project = lease_s, project
        self.notes: list[str] = []  # said at the end of the build (threads add to it)
        self.failed: list[str] = []  # uploads that failed: `filmc cache push` retries
        self._lock = threading.Lock()
        self.moved = Transfer()
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._workers: list[threading.Thread] = []
        self.poll = max(0.1, min(2.0, lease_s / 4))  # how often a waiting build looks again
        # The remote could not be read: this build goes on with the local store alone
        # (one timeout, not one per step).
        self.down = False

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def _count(self, **kw: int) -> None:
        with self._lock:
            self.moved = attrs.evolve(self.moved, **{k: getattr(self.moved, k) + v
                                                     for k, v in kw.items()})

    # -- read-through -----------------------------------------------------------------------

    def lookup(self, keys: Iterable[str]) -> dict[str, Action]:
        """The actions of `keys` the remote holds (keys the local store lacks), recorded
        in the local store as they are: the build reuses them without their bytes."""
        try:
            found = self.remote.get_actions(keys)
        except RemoteError as e:
            self.down = True
            self.note(f"the remote cache {self.remote.url} cannot be read ({e.message}); "
                      f"this build uses the local store alone")
            return {}
        out = {}
        for key, r in sorted(found.items()):
            meta = {**r["meta"], "shared": self.remote.url}
            self.store.record_action(key, r["outputs"], meta)
            out[key] = Action(key, tuple(r["outputs"]), meta)
        if out:
            self._count(hits=len(out))
        return out

    def ensure(self, digests: Iterable[str]) -> list[str]:
        """Fetch those of `digests` the local store lacks (or holds damaged), verified;
        what could not be had, one line each (a corrupt object is named by its digest)."""
        problems = []
        for d in dict.fromkeys(digests):
            if self.store.objects.trusted(d) or (self.store.objects.exists(d)
                                                 and self.store.objects.verify(d)):
                continue
            try:
                n = self.remote.fetch_object(d, self.store.objects)
                self._count(down_objects=1, down_bytes=n)
            except Corrupt as e:
                problems.append(e.message)
            except Missing:
                problems.append(f"neither the local store nor {self.remote.url} holds "
                                f"object {d}")
            except (RemoteError, OSError) as e:
                problems.append(f"cannot fetch object {d} from {self.remote.url}: "
                                f"{getattr(e, 'message', None) or e}")
        return problems

    # -- write-through ----------------------------------------------------------------------

    def upload(self, key: str, outputs: list[dict], meta: dict, paid: bool) -> None:
        """Send a finished step up in the background (paid steps ahead of free ones)."""
        if not self.write:
            return
        if self.down:
            with self._lock:
                self.failed.append(f"{meta.get('step', key[:12])}: the remote cache could "
                                   f"not be reached")
            return
        if not self._workers:
            for i in range(UPLOADERS):
                t = threading.Thread(target=self._work, name=f"filmc-upload-{i}", daemon=True)
                t.start()
                self._workers.append(t)
        self._queue.put((0 if paid else 1, next(self._seq), (key, outputs, meta)))

    def _work(self) -> None:
        while True:
            _prio, _n, item = self._queue.get()
            try:
                if item is None:
                    return
                self.upload_now(*item)
            finally:
                self._queue.task_done()

    def upload_now(self, key: str, outputs: list[dict], meta: dict) -> bool:
        """The step's objects, then its action (a remote action never names an object the
        remote lacks).  False (and the failure kept) when it could not be done."""
        try:
            for o in outputs:
                d = o["digest"]
                if not self.remote.has_object(d):
                    n = self.remote.put_object(d, self.store.objects.path(d))
                    self._count(up_objects=1, up_bytes=n)
            self.remote.put_action(key, outputs, meta)
            return True
        except (RemoteError, OSError) as e:
            with self._lock:
                self.failed.append(f"{meta.get('step', key[:12])}: "
                                   f"{getattr(e, 'message', None) or e}")
            return False

    def drain(self) -> None:
        """Wait for the uploads; then say what failed."""
        if self._workers:
            for _ in self._workers:
                self._queue.put((9, next(self._seq), None))
            self._queue.join()
            self._workers = []
        m = self.moved
        if m.hits or m.down_objects or m.up_objects:
            self.note(f"remote cache: {m.hits} step(s) found in {self.remote.url}, "
                      f"{m.down_objects} object(s) fetched ({_mb(m.down_bytes)}), "
                      f"{m.up_objects} uploaded ({_mb(m.up_bytes)})")
        if self.failed:
            self.note(f"{len(self.failed)} step(s) could not be uploaded to {self.remote.url} "
                      f"(first: {self.failed[0]}); they are kept in the local store, and "
                      f"`filmc cache push` sends them")

    # -- claims -----------------------------------------------------------------------------

    async def claim(self, key: str, step: str, waiting: Callable[[str], None],
                    reuse: bool = True) -> Claim | Action | None:
        """Before a paid step submits: the claim this process now holds (maybe taken over
        from a dead holder, with its job to re-attach to), or the action another machine
        made while this one waited (unless not `reuse`: its result could not be used).
        None: build it without a claim (a read-only client, or a remote that cannot be
        reached)."""
        said = False
        if self.down:
            return None
        while True:
            try:
                lease: Lease | None
                if not self.write:  # a read-only client claims nothing, but waits for others
                    lease = await asyncio.to_thread(self.remote.lease, key)
                    won = False
                    if lease is None or not lease.live():
                        return None
                else:
                    mine = holder(key, self.project, self.lease_s)
                    won, lease = await asyncio.to_thread(self.remote.claim, mine, self.lease_s)
                assert lease is not None
                if won:
                    # Made meanwhile (its holder uploaded, then released)?  Then take that.
                    found = await asyncio.to_thread(self.remote.get_action, key) \
                        if reuse else None
                    if found is not None:
                        claim = Claim(self, lease, None)
                        await claim.end(release=True)
                        return self._hit(key, found)
                    claim = Claim(self, lease, lease if lease.job else None)
                    claim.start()
                    return claim
                if not said:
                    said = True
                    waiting(f"{step}: {lease.who} is making it (claimed in "
                            f"{self.remote.url}); waiting for its result")
                await asyncio.sleep(self.poll)
                found = await asyncio.to_thread(self.remote.get_action, key) \
                    if reuse else None
                if found is not None:
                    return self._hit(key, found)
            except RemoteError as e:
                self.down = True
                self.note(f"{step}: cannot claim it in {self.remote.url} ({e.message}); "
                          f"made without a claim (and nothing more is asked of it)")
                return None

    def _hit(self, key: str, r: dict) -> Action:
        meta = {**r["meta"], "shared": self.remote.url}
        self.store.record_action(key, r["outputs"], meta)
        self._count(hits=1)
        return Action(key, tuple(r["outputs"]), meta)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 10_000 else f"{n} B"
