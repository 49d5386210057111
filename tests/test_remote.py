"""The engine's rules for paid work, unit by unit, with in-process services that misbehave
exactly as needed: what is submitted, what is journaled, what Ctrl-C leaves running.
(tests/test_services*.py prove the same over real HTTP, through the command line.)"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import networkx as nx
from PIL import Image

from filmc.backends.protocol import (
    Adapter,
    Done,
    FailureKind,
    Handle,
    Pending,
    Request,
    ServiceError,
)
from filmc.compiler.config import BackendConfig, Price
from filmc.compiler.graph import Step
from filmc.compiler.pipeline import Program
from filmc.engine.executor import Executor, Options
from filmc.engine.journal import Journal, read_open
from filmc.engine.state import State
from filmc.engine.store import Store
from filmc.lang.steps import Fields, StepId

FAST = {"retries": 2, "backoff_s": 0.01, "backoff_cap_s": 0.02, "poll_interval_s": 0.01,
        "timeout_s": 30}


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


class Service(Adapter):
    """A service that remembers what it was sent; subclasses misbehave."""

    kinds = ("keyframe",)
    submits: list[str] = []
    jobs: dict[str, str] = {}

    async def fetch(self, done: Done, request: Request) -> dict[str, Path]:
        path = request.workdir / "image.png"
        path.write_bytes(png())
        return {"image": path}


def program(root: Path, adapter: type[Adapter], shots: int = 1, key: str | None = None,
            price: float = 1.0) -> Any:
    g = nx.DiGraph()
    for i in range(shots):
        sid = StepId.keyframe("s", f"x{i}", "svc-1")
        step = Step(sid, "svc", frozenset(), None, Fields(prompt=f"shot {i}", take=1), {}, (),
                    (), key or f"{i:064x}", {})
        g.add_node(step.id, kind="keyframe", scene="s", shot=f"x{i}", characters=frozenset(),
                   step=step)
    conf = BackendConfig("svc", "svc", 4, prices={"keyframe": Price(price)})
    info = SimpleNamespace(name="svc", type="svc", adapter=adapter, settings=FAST, config=conf,
                           runs_here=False)
    return Program(g, {"svc": info}, root, "t", "t", (), "USD", 8, None, ())


def build(root: Path, adapter: type[Adapter], *, interrupt_after: float | None = None,
          **kw: Any) -> tuple[list, dict]:
    """Run the program; Ctrl-C after `interrupt_after` seconds.  (outcomes, open jobs)"""
    shots = kw.pop("shots", 1)
    key = kw.pop("key", None)
    with Store.open(root / ".filmc", create=True) as store, \
            State.open(root, create=True) as state:  # type: ignore[union-attr]
        journal = Journal(state.path / "journal.log", store.actions_present)
        ex = Executor(program(root, adapter, shots, key), store, state, journal, Options(**kw),
                      adapters=lambda info, setup: adapter(setup))

        async def run() -> list:
            if interrupt_after is not None:
                asyncio.get_running_loop().call_later(interrupt_after, ex.interrupt)
            return await ex.run()

        outcomes = asyncio.run(run())
        journal.close()
    return outcomes, read_open(root / ".filmc" / "journal.log")


# -- submitting -------------------------------------------------------------------------------


class LostAnswers(Service):
    """Client-chosen ids; a submit's answer is lost, and the service cannot be asked."""

    def prepare(self, request: Request) -> Handle:
        return Handle(f"id-{len(self.submits)}")

    async def submit(self, request: Request, handle: Handle | None) -> Handle:
        assert handle is not None
        self.submits.append(handle.id)
        raise ServiceError(FailureKind.TRANSIENT, "the connection broke after sending")

    async def poll(self, handle: Handle) -> Pending:
        raise ServiceError(FailureKind.TRANSIENT, "the service is unreachable")


def test_a_submit_that_may_have_been_billed_keeps_its_journal_line(tmp_path: Path) -> None:
    """Out of tries with the fate of the job unknown: the `submitting` line stays, so the
    next build asks the service by that id instead of paying for a new job."""
    LostAnswers.submits = []
    outcomes, jobs = build(tmp_path, LostAnswers)
    assert outcomes[0].status == "failed"
    assert LostAnswers.submits == ["id-0"]  # not sent again: it could not be looked up
    [job] = jobs.values()
    assert job.op == "submitting" and job.handle.id == "id-0"


class NeverHeardOf(Service):
    """Every submit is lost; asked by id, the service says it never got it: safe to resend."""

    def prepare(self, request: Request) -> Handle:
        return Handle("id-same")

    async def submit(self, request: Request, handle: Handle | None) -> Handle:
        self.submits.append("sent")
        raise ServiceError(FailureKind.TRANSIENT, "the connection broke after sending")

    async def poll(self, handle: Handle) -> Pending:
        raise ServiceError(FailureKind.NOT_FOUND, "no such job")


def test_a_submit_the_service_never_got_is_sent_again_then_given_up(tmp_path: Path) -> None:
    NeverHeardOf.submits = []
    outcomes, jobs = build(tmp_path, NeverHeardOf)
    assert outcomes[0].status == "failed" and jobs == {}
    assert len(NeverHeardOf.submits) == FAST["retries"] + 1


class Counting(Service):
    """A queue service that finishes each job at once."""

    async def submit(self, request: Request, handle: Handle | None) -> Handle:
        self.submits.append(request.key)
        return Handle(f"job-{len(self.submits)}")

    async def poll(self, handle: Handle) -> Done:
        return Done({"image": handle.id})


def test_forced_twins_run_once(tmp_path: Path) -> None:
    """Two steps with one key (identical shots), forced: one job, not two sharing a line."""
    Counting.submits = []
    ids = frozenset({"keyframe.s.x0.take1", "keyframe.s.x1.take1"})
    outcomes, jobs = build(tmp_path, Counting, shots=2, key="f" * 64, force=ids)
    assert [o.status for o in outcomes] == ["ran", "ran"] and jobs == {}
    assert len(Counting.submits) == 1


# -- Ctrl-C ------------------------------------------------------------------------------------


class Slow(Service):
    """A queue service without client ids whose jobs take a long time."""

    async def submit(self, request: Request, handle: Handle | None) -> Handle:
        self.submits.append(request.key)
        return Handle(f"job-{len(self.submits)}")

    async def poll(self, handle: Handle) -> Pending:
        return Pending("running", wait=0.05)


def test_ctrl_c_stops_polling_a_journaled_job_at_once(tmp_path: Path) -> None:
    Slow.submits = []
    started = time.monotonic()
    outcomes, jobs = build(tmp_path, Slow, shots=3, interrupt_after=0.5)
    assert time.monotonic() - started < 3
    assert [o.status for o in outcomes] == ["skipped"] * 3
    assert len(jobs) == 3 and all(j.op == "accepted" for j in jobs.values())  # for next time


class Throttled(Service):
    """A synchronous service that answers 429 with a long Retry-After."""

    async def submit(self, request: Request, handle: Handle | None) -> Handle:
        self.submits.append(request.key)
        await asyncio.sleep(0.2)
        raise ServiceError(FailureKind.RATE_LIMITED, "slow down", retry_after=0.3, unbilled=True)


def test_after_ctrl_c_a_throttled_request_is_not_sent_again(tmp_path: Path) -> None:
    Throttled.submits = []
    started = time.monotonic()
    outcomes, _jobs = build(tmp_path, Throttled, interrupt_after=0.1)
    assert time.monotonic() - started < 2
    assert Throttled.submits == ["0" * 64]  # the one in flight came back; no more were sent
    assert outcomes[0].status in ("failed", "skipped")


# -- money --------------------------------------------------------------------------------------


class Attachable(Service):
    async def poll(self, handle: Handle) -> Done:
        return Done({"image": handle.id}, cost=1.0)


def test_a_job_an_earlier_build_paid_for_is_not_spent_again(tmp_path: Path) -> None:
    """Re-attached, it costs this build nothing: --max-cost 1 still lets one new job run."""
    (tmp_path / ".filmc").mkdir()
    key = f"{0:064x}"
    (tmp_path / ".filmc" / "journal.log").write_text(json.dumps(
        {"op": "accepted", "key": key, "step": "keyframe.s.x0.take1", "backend": "svc",
         "handle": {"id": "old-job", "data": {}}}) + "\n")

    class Fresh(Attachable):
        async def submit(self, request: Request, handle: Handle | None) -> Handle:
            self.submits.append(request.key)
            return Handle("new-job")

    Fresh.submits = []
    outcomes, jobs = build(tmp_path, Fresh, shots=2, max_cost=1.0)
    assert [(o.status, o.attached) for o in outcomes] == [("ran", True), ("ran", False)]
    assert Fresh.submits == [f"{1:064x}"] and jobs == {}


class KeyRotated(Service):
    """The job is accepted; then every poll is refused: the key was rotated meanwhile."""

    async def submit(self, request: Request, handle: Handle | None) -> Handle:
        self.submits.append("sent")
        return Handle(f"job-{len(self.submits)}")

    async def poll(self, handle: Handle) -> Pending:
        raise ServiceError(FailureKind.AUTH, "the API key was refused")


def test_a_refused_key_while_polling_keeps_the_paid_job_for_the_next_build(
        tmp_path: Path) -> None:
    """An accepted job is paid and may run on: a key (or credit) refused while polling it
    stops the backend, and the job stays journaled, so a build with a good key polls it
    instead of paying for another."""
    KeyRotated.submits = []
    outcomes, jobs = build(tmp_path, KeyRotated, shots=2)
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert all("it stays recorded, and the next build polls it again" in (o.error or "")
               for o in outcomes)
    assert len(KeyRotated.submits) == 2
    assert sorted(j.handle.id for j in jobs.values()) == ["job-1", "job-2"]
    assert all(j.op == "accepted" for j in jobs.values())
