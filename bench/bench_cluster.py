"""Benchmark the animatic on a local Dask cluster of 2 workers against this machine alone.

    .venv/bin/python bench/bench_cluster.py --shots 200            # print the figures
    .venv/bin/python bench/bench_cluster.py --shots 200 --record   # and append them to
                                                                   # bench/BENCHMARKS.md

The synthetic film (`bench/make_film.py --shots N`, 3,000 by default) at 480x200 is built
offline twice from empty stores, in the same run: once by the local executor (its render
processes, `--jobs 2`) and once with `--cluster` on a `LocalCluster` of 2 worker
processes with one thread each, started here, on the same machine (so the store is
shared and tasks carry paths: what a cluster on a shared disk costs).  Both builds render
the same steps with the same two processes' worth of CPU, so the ratio is what going
through Dask costs, not what a bigger cluster would gain.  The outputs are compared
byte for byte.

Per-step overhead, two ways: the CPU the cluster build spent beyond the local one (the
build process and its children, the workers' own CPU and their ffmpeg's, read on the
workers with `getrusage`, and the scheduler's, which runs in this process), divided by the steps that went through the cluster; and
the median, over the same steps, of how much longer each step took from its slot to its
stored outputs (report.json's seconds).  Connecting (importing Dask, the version check
of every worker) is timed apart.  The machine is shared: CPU times are the steady
figures, walls move with the load, which is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_check import record  # noqa: E402

SIZE = "480x200"
MAIN = "film.film"


def children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cpu_here() -> float:
    """This process's CPU and its waited-for children's (run on each worker)."""
    import resource as res

    own, kids = res.getrusage(res.RUSAGE_SELF), res.getrusage(res.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _own() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def filmc(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "filmc"
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "filmc", *args]


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> dict:
    cpu, t = children(), time.perf_counter()
    p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"`{' '.join(argv[:6])} ...` failed:\n{p.stdout[-2000:]}"
                         f"{p.stderr[-4000:]}")
    return {"wall": wall, "cpu": children() - cpu, "err": p.stderr}


def environment(work: Path, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILMC_")}
    (work / f"{name}-cache").mkdir()
    env.update(NO_COLOR="1", FILMC_STORE=str(work / f"{name}-store"),
               XDG_CACHE_HOME=str(work / f"{name}-cache"))
    return env


def outputs(project: Path) -> tuple[dict[str, str], dict]:
    """Every output under build/<film>/ by digest (not the report, the review page or the
    exports, which name the project's own folder), and the report."""
    (report,) = (project / "build").glob("*/report.json")
    out = report.parent
    files = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(out.rglob("*")) if p.is_file() and p.name != "report.json"
             and p.relative_to(out).parts[0] not in ("review", "export")}
    return files, json.loads(report.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=3000, help="shots in the film (default 3000)")
    ap.add_argument("--record", action="store_true", help="append to bench/BENCHMARKS.md")
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from filmc.backends.local.adapter import CLUSTER_KINDS

    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="filmc-bench-cluster-") as tmp:
        work = Path(tmp)
        film = work / "film"
        subprocess.run([sys.executable, str(HERE / "make_film.py"), "--shots", str(args.shots),
                        "--out", str(film), "--size", SIZE], check=True, capture_output=True)
        here, there = work / "here", work / "there"
        shutil.copytree(film, here)
        shutil.copytree(film, there)

        local = timed(filmc("build", "--offline", "--quiet", "--jobs", "2", MAIN),
                      environment(work, "here"), here)
        load.append(os.getloadavg()[0])

        with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            address = cluster.scheduler_address
            env = environment(work, "there")
            # What connecting costs: Dask's import, the scheduler, every worker's facts.
            probe = timed([sys.executable, "-c", "import sys; from filmc.backends.local."
                           "cluster import check; check(sys.argv[1])", address], env, work)
            before, scheduler = sum(client.run(_cpu_here).values()), _own()
            remote = timed(filmc("build", "--offline", "--quiet", "--cluster", address, MAIN),
                           env, there)
            workers = sum(client.run(_cpu_here).values()) - before
            scheduler = _own() - scheduler  # the scheduler runs in this process
        load.append(os.getloadavg()[0])

        mine, report_here = outputs(here)
        theirs, report_there = outputs(there)

    same = mine == theirs
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    secs_here = {s["id"]: s["seconds"] for s in report_here["steps"] if s["status"] == "ran"}
    sent = [s for s in report_there["steps"] if s["status"] == "ran"
            and s["id"].split(".")[0] in CLUSTER_KINDS]
    ran = report_there["counts"].get("ran", 0)
    diffs = [s["seconds"] - secs_here[s["id"]] for s in sent if s["id"] in secs_here]
    cpu_here, cpu_there = local["cpu"], remote["cpu"] + workers + scheduler
    per_step_cpu = (cpu_there - cpu_here) / max(1, len(sent))
    ratio = remote["wall"] / local["wall"]
    body = [
        f"The synthetic film, {args.shots} shots at {SIZE} (`bench/make_film.py --shots "
        f"{args.shots} --size {SIZE}`), built offline from empty stores: {ran} steps, of "
        f"which {len(sent)} went to the cluster; load average {min(load):.1f}–{max(load):.1f} "
        f"on {os.cpu_count()} CPUs during the run.", "",
        "| run | wall | CPU (build + renders) | wall ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| local executor, `--jobs 2` (2 render processes) | {local['wall']:.1f} s | "
        f"{cpu_here:.1f} s | 1 |",
        f"| `--cluster`, LocalCluster of 2 workers × 1 thread (4 steps in flight) | "
        f"{remote['wall']:.1f} s | {cpu_there:.1f} s (workers {workers:.1f} s, scheduler "
        f"{scheduler:.1f} s) | "
        f"{ratio:.2f}x |",
        f"| connecting alone (import Dask, connect, check every worker's facts) | "
        f"{probe['wall']:.1f} s | {probe['cpu']:.1f} s | |",
        "",
        f"- per-step overhead of the cluster, CPU: {per_step_cpu * 1000:+.1f} ms a step "
        f"(({cpu_there:.1f} − {cpu_here:.1f}) s ÷ {len(sent)} steps)",
        f"- per-step overhead, time from slot to stored, median over the same steps: "
        f"{statistics.median(diffs) * 1000:+.1f} ms "
        f"(local median {statistics.median(secs_here.values()) * 1000:.0f} ms a step)"
        if diffs else "- per-step time: no step to compare",
        "- outputs byte-identical to the local build: "
        + (f"yes ({len(mine)} files)" if same else
           f"NO, {len(differ)} of {len(mine)} files differ: {', '.join(differ[:6])}"
           + (" …" if len(differ) > 6 else "")),
    ]
    print("\n".join(body))
    if args.record:
        record(f"the animatic on a local Dask cluster of 2 workers ({args.shots} shots, "
               f"{SIZE})", body)
    if not same:
        raise SystemExit("the cluster's outputs differ from the local build's: "
                         + ", ".join(differ))


if __name__ == "__main__":
    main()
