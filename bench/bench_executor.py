"""Benchmark P3, the engine alone: its overhead against a service that only waits.

2,000 independent keyframes on an in-process service adapter (no HTTP) that takes
100 ms per job, with a concurrency of 32.  The ideal wall time is ⌈2000/32⌉ ×
0.1 s = 6.3 s; the goal is wall ÷ ideal ≤ 1.10, and the engine's own CPU per job
≤ 1 ms (process CPU time of the whole run ÷ jobs).  Every job takes the path a
paid one does: a client-chosen id journaled (fsynced) before the submit, the
handle recorded, polls, a download into the work folder, the media check, the
object store (hash, fsync, rename), the action log.  bench/bench_remote.py
measures the same through real HTTP against a loopback ComfyUI.

    .venv/bin/python bench/bench_executor.py [--steps 2000] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import networkx as nx
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_check import record  # noqa: E402

from filmc.backends.protocol import Adapter, Done, Handle, Pending, Request  # noqa: E402
from filmc.compiler.config import BackendConfig  # noqa: E402
from filmc.compiler.graph import Step  # noqa: E402
from filmc.compiler.pipeline import Program  # noqa: E402
from filmc.engine.executor import Executor, Options  # noqa: E402
from filmc.engine.journal import Journal  # noqa: E402
from filmc.engine.state import State  # noqa: E402
from filmc.engine.store import Store  # noqa: E402
from filmc.lang.steps import Fields, StepId  # noqa: E402

SLEEP = 0.1
GOAL_RATIO = 1.10
GOAL_CPU_MS = 1.0


def _png(i: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (i % 256, i // 256 % 256, 7)).save(out, "PNG")
    return out.getvalue()


PNGS: list[bytes] = []  # made before the clock starts: the service's work, not the engine's


class Waiter(Adapter):
    """A service whose every job takes SLEEP seconds; its images differ per job."""

    type = "waiter"
    kinds = ("keyframe",)

    def prepare(self, request: Request) -> Handle:
        return Handle(f"job-{request.key[-16:]}", {"at": time.monotonic()})

    async def submit(self, request: Request, handle: Handle | None) -> Handle:
        assert handle is not None
        return Handle(handle.id, {"at": time.monotonic()})

    async def poll(self, handle: Handle) -> Pending | Done:
        left = SLEEP - (time.monotonic() - float(handle.data["at"]))
        if left > 0:
            return Pending("running", wait=left)
        return Done({"image": int(handle.id[4:], 16)})

    async def fetch(self, done: Done, request: Request) -> dict[str, Path]:
        path = request.workdir / "image.png"
        path.write_bytes(PNGS[int(done.outputs["image"]) % len(PNGS)])
        return {"image": path}


def program(root: Path, steps: int, concurrency: int) -> Any:
    g = nx.DiGraph()
    for i in range(steps):
        sid = StepId.keyframe("s", f"x{i}", 1)
        step = Step(sid, "waiter", frozenset(), None, Fields(prompt=f"shot {i}", take=1), {},
                    (), (), f"{i:064x}", {})
        g.add_node(step.id, kind="keyframe", scene="s", shot=f"x{i}", characters=frozenset(),
                   step=step)
    conf = BackendConfig("waiter", "waiter", concurrency)
    info = SimpleNamespace(name="waiter", type="waiter", adapter=Waiter, settings={},
                           config=conf, runs_here=False)
    return Program(g, {"waiter": info}, root, "bench", "bench", (), "USD", concurrency, None, ())


def run(steps: int, concurrency: int) -> dict:
    if len(PNGS) < steps:
        PNGS[:] = [_png(i) for i in range(steps)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Store.open(root / ".filmc", create=True) as store, \
                State.open(root, create=True) as state:  # type: ignore[union-attr]
            journal = Journal(state.path / "journal.log")
            ex = Executor(program(root, steps, concurrency), store, state,  # type: ignore[arg-type]
                          journal, Options(jobs=2))
            cpu0, wall0 = time.process_time(), time.perf_counter()
            outcomes = asyncio.run(ex.run())
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            journal.close()
    bad = [o for o in outcomes if o.status != "ran"]
    assert not bad, (len(bad), bad[0].error)
    ideal = math.ceil(steps / concurrency) * SLEEP
    return {"wall": wall, "ideal": ideal, "ratio": wall / ideal, "cpu_ms": cpu / steps * 1000}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    results = sorted((run(args.steps, args.concurrency) for _ in range(args.runs)),
                     key=lambda r: r["ratio"])
    r = results[len(results) // 2]
    lines = [
        f"{args.steps} keyframes on an in-process service adapter that takes {SLEEP * 1000:.0f} "
        f"ms a job, concurrency {args.concurrency}; each job journaled (fsynced) before its "
        f"submit, its download checked and stored (hash, fsync, rename), its action logged. "
        f"Median of {args.runs} runs.", "",
        "| measure | value | goal |", "| --- | ---: | ---: |",
        f"| wall | {r['wall']:.2f} s | |",
        f"| ideal ⌈{args.steps}/{args.concurrency}⌉ × {SLEEP} s | {r['ideal']:.2f} s | |",
        f"| **wall ÷ ideal** | **{r['ratio']:.3f}** | {GOAL_RATIO} |",
        f"| engine CPU per job | {r['cpu_ms']:.2f} ms | {GOAL_CPU_MS} ms |", "",
        "Each run (wall ÷ ideal / CPU per job): "
        + ", ".join(f"{x['ratio']:.3f} / {x['cpu_ms']:.2f} ms" for x in results), "",
        f"- P3 wall ratio ≤ {GOAL_RATIO}: {'PASS' if r['ratio'] <= GOAL_RATIO else 'MISS'}",
        f"- P3 CPU per job ≤ {GOAL_CPU_MS} ms: "
        f"{'PASS' if r['cpu_ms'] <= GOAL_CPU_MS else 'MISS'}",
    ]
    print("\n".join(lines))
    if args.record:
        record(f"P3, the engine alone: {args.steps} jobs on an in-process service",
               ["Run: `.venv/bin/python bench/bench_executor.py --record`.", "", *lines])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
