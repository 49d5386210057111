"""One backend at a service: submit, poll and fetch, without ever paying twice.

`Service.run(request, step)` takes a step from "needs making" to "files in the
work folder", by the rules of ../shared/BACKENDS.md:

- **Journal first.**  A client-chosen job id (`prepare`) is journaled before the
  submit, an accepted job's handle before the first poll; a job a killed build
  left running is polled again (`attach`), never submitted again.
- **Submit at most once.**  A failed submit is sent again only when it provably
  did nothing billable (`unbilled`), or when the service, asked by our own job
  id, does not know it.  Otherwise the step fails and says the submission may
  have reached the service.
- **Retry what is safe.**  Polls and downloads are retried with backoff, full
  jitter and `Retry-After`, up to the policy's tries and the job's deadline; a
  job past its deadline stays journaled for the next build.
- **Stop what cannot succeed.**  Out of credit, or a refused key: this backend
  takes no more submissions in this build.  A refused prompt fails its shot
  with the service's reason, and is not retried.
- **Concurrency and rate are the backend's own**, apart from `--jobs` (which
  bounds this machine's CPU work): a remote wait holds its backend's slot and
  one of `[build] concurrency`'s, the cap on jobs in flight over all services.

Downloads are fetched at once (result URLs expire), re-polling once for fresh
URLs when a download has expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from ..backends.protocol import (
    STOPS_BACKEND,
    Backend,
    BackendError,
    Done,
    FailureKind,
    Handle,
    Pending,
    Request,
    ServiceError,
)
from .journal import Journal, OpenJob
from .retry import Policy, RateLimiter

Share = Callable[[str, str, str, Handle], Awaitable[None]]  # (op, backend, step, handle)


class Uncertain(BackendError):
    """A submission whose fate is unknown: it may have been accepted (and billed)."""


class StillRunning(BackendError):
    """A journaled job filmc stopped waiting for; the next build polls it again."""


class Service:
    def __init__(self, name: str, adapter: Backend, concurrency: int, rate: float | None,
                 policy: Policy, journal: Journal, shared: asyncio.Semaphore) -> None:
        self.name = name
        self.adapter = adapter
        self.slots = asyncio.Semaphore(max(1, concurrency))
        self.shared = shared  # [build] concurrency: jobs in flight over every service
        self.limiter = RateLimiter(rate)
        self.policy = policy
        self.journal = journal
        self.stopped: str | None = None  # why this backend takes no more submissions
        # Step tasks that submitted with no journaled id (a synchronous service), from the
        # submit until the engine has stored the answer or given up on it (`settled`): an
        # interrupted build lets them finish, for their answer is paid for and cannot be
        # asked for again.
        self.unrecorded: set[asyncio.Task] = set()
        self.interrupted = False  # Ctrl-C: nothing more is sent, not even a retry

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of this backend's jobs in flight, and one of the build's: held from before
        the submit until the step's outputs are stored."""
        async with self.slots, self.shared:
            yield

    async def run(self, request: Request, attach: OpenJob | None,
                  share: Share | None = None) -> tuple[Done, Mapping[str, Path | Sequence[Path]]]:
        """Make one step, holding a `slot()`: its Done and its files.  `attach`: a job an
        earlier build left.  `share(op, backend, step, handle)`: each journal entry is also
        put in the step's claim in the team's remote cache (engine/sharing.py), so that
        a machine that takes an expired claim over polls this job instead of paying."""
        key, step = request.key, str(request.step)
        deadline = time.monotonic() + self.policy.deadline_for(request.kind)
        got: Handle | Done
        prepared: Handle | None = None
        if attach is not None:
            prepared = attach.handle
            got = await self._reattach(request, prepared, uncertain=attach.op == "submitting")
        else:
            if self.stopped:
                raise BackendError(f"not submitted: {self.stopped}")
            prepared = self.adapter.prepare(request)
            if prepared is not None:
                await self.journal.submitting(key, step, self.name, prepared)
                if share is not None:
                    await share("submitting", self.name, step, prepared)
            got = await self._submit(request, prepared)
        if isinstance(got, Handle):
            if attach is None or attach.op == "submitting":
                await self.journal.accepted(key, step, self.name, got)
                if share is not None:
                    await share("accepted", self.name, step, got)
            # The job is journaled: Ctrl-C may stop waiting for it now (and, if it came
            # meanwhile, does: the job runs on, and the next build picks it up).
            self.settled(asyncio.current_task())
            if self.interrupted:
                raise asyncio.CancelledError
            got = await self._wait(request, got, deadline)
        job = self.journal.open_jobs.get(key)
        recorded = job.handle if job else None
        return got, await self._fetch(request, got, recorded)

    # -- submitting --------------------------------------------------------------------------

    async def _submit(self, request: Request, prepared: Handle | None) -> Handle | Done:
        attempt = 0
        while True:
            await self.limiter.wait()
            task = asyncio.current_task()
            if prepared is None and task is not None:
                self.unrecorded.add(task)
            try:
                # On success the task stays in `unrecorded` until the engine settles it.
                return await self.adapter.submit(request, prepared)
            except ServiceError as e:
                self.settled(task)
                failure = e
            except BaseException:
                self.settled(task)
                raise
            attempt += 1
            self._note_stop(failure)
            if not failure.retryable:  # the service said no: nothing was queued
                await self._close(request.key, "failed")
                raise failure
            if not failure.unbilled:
                if prepared is None:
                    raise Uncertain(
                        f"{failure.message}; the submission may have reached `{self.name}` and "
                        f"been billed, so it is not sent again: `filmc build` submits it anew "
                        f"when you choose to")
                # Ask the service by our own id whether it has the job.  If it cannot be
                # asked, the `submitting` line stays, and the next build asks again.
                found = await self._lookup(prepared)
                if found is not None:
                    return prepared if isinstance(found, Pending) else found
            # Here the failed submission provably made nothing: sending it again is safe.
            if attempt > self.policy.retries:
                await self._close(request.key, "failed")
                raise failure
            if self.interrupted:
                await self._close(request.key, "failed")
                raise BackendError(f"not sent again: the build was interrupted "
                                   f"({failure.message})")
            await asyncio.sleep(self.policy.delay(attempt, failure.retry_after))

    async def _lookup(self, handle: Handle) -> Pending | Done | None:
        """What the service says of a job we may have submitted; None: it does not know it."""
        attempt = 0
        while True:
            await self.limiter.wait()
            try:
                return await self.adapter.poll(handle)
            except ServiceError as e:
                if e.kind is FailureKind.NOT_FOUND:
                    return None
                attempt += 1
                if not e.retryable or attempt > self.policy.retries:
                    raise
                await asyncio.sleep(self.policy.delay(attempt, e.retry_after))

    async def _reattach(self, request: Request, handle: Handle, uncertain: bool) -> Handle | Done:
        """A job an earlier build journaled: poll it; if the service never got it (a build
        that died mid-submit), submit it now under the same id."""
        found = await self._lookup(handle)
        if found is None:
            if not uncertain:
                await self._close(request.key, "lost")
                raise BackendError(f"`{self.name}` no longer knows job {handle.id}, which an "
                                   f"earlier build submitted; `filmc build` submits it anew")
            if self.stopped:
                raise BackendError(f"not submitted: {self.stopped}")
            return await self._submit(request, handle)
        return handle if isinstance(found, Pending) else found

    def _note_stop(self, e: ServiceError) -> None:
        if e.kind in STOPS_BACKEND and self.stopped is None:
            what = "is out of credit" if e.kind is FailureKind.CREDIT else "refused the key"
            self.stopped = f"`{self.name}` {what} ({e.message})"

    # -- waiting ------------------------------------------------------------------------------

    async def _wait(self, request: Request, handle: Handle, deadline: float) -> Done:
        failures = 0
        while True:
            if time.monotonic() > deadline:
                raise StillRunning(
                    f"job {handle.id} is still running at `{self.name}` after "
                    f"{self.policy.deadline_for(request.kind):g} s; it stays recorded, and the "
                    f"next build picks it up (raise `timeout_s` to wait longer)")
            await self.limiter.wait()
            try:
                got = await self.adapter.poll(handle)
            except ServiceError as e:
                if e.retryable and failures < self.policy.retries:
                    failures += 1
                    await asyncio.sleep(self.policy.delay(failures, e.retry_after))
                    continue
                if e.retryable:  # the service is unreachable: the job may well finish
                    raise StillRunning(f"cannot poll job {handle.id} at `{self.name}` "
                                       f"({e.message}); it stays recorded, and the next build "
                                       f"picks it up") from None
                if e.kind in STOPS_BACKEND:  # a rotated key, a lapsed plan: the job may run on
                    self._note_stop(e)
                    raise StillRunning(f"cannot poll job {handle.id} at `{self.name}` "
                                       f"({e.message}); it stays recorded, and the next build "
                                       f"polls it again instead of paying for another") from None
                await self._close(request.key, "lost" if e.kind is FailureKind.NOT_FOUND
                                  else "failed")
                self._note_stop(e)
                raise
            failures = 0
            if isinstance(got, Done):
                return got
            await asyncio.sleep(got.wait if got.wait is not None else self.policy.poll)

    # -- fetching -----------------------------------------------------------------------------

    async def _fetch(self, request: Request, done: Done,
                     handle: Handle | None) -> Mapping[str, Path | Sequence[Path]]:
        attempt, refreshed = 0, False
        while True:
            try:
                return await self.adapter.fetch(done, request)
            except ServiceError as e:
                if e.kind is FailureKind.EXPIRED and handle is not None and not refreshed:
                    refreshed = True  # a fresh result may carry fresh download links
                    fresh = await self._lookup(handle)
                    if isinstance(fresh, Done):
                        done = fresh
                        continue
                attempt += 1
                if e.retryable and attempt <= self.policy.retries:
                    await asyncio.sleep(self.policy.delay(attempt, e.retry_after))
                    continue
                await self._close(request.key, "lost")
                job = f"job {handle.id}" if handle is not None else "the request"
                raise BackendError(f"the result of {job} cannot be downloaded: "
                                   f"{e.message}") from None

    def settled(self, task: asyncio.Task | None) -> None:
        """`task`'s paid answer is stored, or lost for good: Ctrl-C may cancel it again."""
        if task is not None:
            self.unrecorded.discard(task)

    async def _close(self, key: str, outcome: str) -> None:
        await self.journal.closed(key, outcome)

    async def done(self, key: str) -> None:
        """The step's outputs are in the store: the job is over."""
        await self.journal.closed(key, "done")
