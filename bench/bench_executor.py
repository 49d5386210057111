"""Benchmark P3: the executor's overhead, against a backend that only waits.

2,000 independent steps on a backend that sleeps 100 ms per call, with a
concurrency of 32.  The ideal wall time is ⌈2000/32⌉ × 0.1 s = 6.3 s; the goal
is wall ÷ ideal ≤ 1.10, and the executor's own CPU per step ≤ 1 ms (process CPU
time of the whole build, including the store's writes, ÷ steps).  Each step
writes a small output that goes through the real store: object write, fsync,
action record.

    .venv/bin/python bench/bench_executor.py [--steps 2000] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import networkx as nx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_check import record  # noqa: E402

from filmc.compiler.executor import Executor, Options  # noqa: E402
from filmc.compiler.graph import Step  # noqa: E402
from filmc.compiler.store import Store  # noqa: E402

SLEEP = 0.1
GOAL_RATIO = 1.10
GOAL_CPU_MS = 1.0


class Sleeper:
    async def run(self, job):
        await asyncio.sleep(SLEEP)
        out = job.workdir / "out.txt"
        out.write_text(job.step.key)
        return [out]

    def close(self) -> None:
        pass


def fake_compiled(root: Path, steps: int, concurrency: int):
    g = nx.DiGraph()
    for i in range(steps):
        key = f"{i:064x}"
        step = Step(f"keyframe.s.x{i}.take1", "keyframe", "remote", "s", f"x{i}", frozenset(),
                    None, "", {}, (), (), key, {})
        g.add_node(step.id, kind="keyframe", scene="s", shot=f"x{i}", characters=frozenset(),
                   step=step)
    backend = SimpleNamespace(type="sleep", concurrency=concurrency, settings={})
    config = SimpleNamespace(backend=lambda name: backend, estimate=lambda *a: None)
    film = SimpleNamespace(width=64, height=32, fps=Fraction(24))
    project = SimpleNamespace(root=root)
    return SimpleNamespace(graph=g, config=config, film=film, project=project)


def run(steps: int, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        compiled = fake_compiled(root, steps, concurrency)
        sleeper = Sleeper()
        with Store.open(root, create=True) as store:
            ex = Executor(compiled, store, Options(jobs=concurrency),  # type: ignore[arg-type]
                          adapters=lambda *a: sleeper)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            outcomes = asyncio.run(ex.run())
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    bad = [o for o in outcomes if o.status != "ran"]
    assert not bad, (len(bad), bad[0].error)
    ideal = math.ceil(steps / concurrency) * SLEEP
    return {"wall": wall, "ideal": ideal, "ratio": wall / ideal, "cpu_ms": cpu / steps * 1000}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.steps, args.concurrency)
    lines = [
        f"{args.steps} steps, a backend that sleeps {SLEEP * 1000:.0f} ms, concurrency "
        f"{args.concurrency}; each output goes through the store (object, fsync, action).", "",
        "| measure | value | goal |", "| --- | ---: | ---: |",
        f"| wall | {r['wall']:.2f} s | |",
        f"| ideal ⌈{args.steps}/{args.concurrency}⌉ × {SLEEP} s | {r['ideal']:.2f} s | |",
        f"| **wall ÷ ideal** | **{r['ratio']:.3f}** | {GOAL_RATIO} |",
        f"| executor CPU per step | {r['cpu_ms']:.2f} ms | {GOAL_CPU_MS} ms |", "",
        f"- P3 wall ratio ≤ {GOAL_RATIO}: {'PASS' if r['ratio'] <= GOAL_RATIO else 'FAIL'}",
        f"- P3 CPU per step ≤ {GOAL_CPU_MS} ms: {'PASS' if r['cpu_ms'] <= GOAL_CPU_MS else 'FAIL'}",
    ]
    print("\n".join(lines))
    if args.record:
        record(f"filmc build executor overhead (P3), {args.steps} steps",
               ["Run: `.venv/bin/python bench/bench_executor.py --record`.", "", *lines])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
