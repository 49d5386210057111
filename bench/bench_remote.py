"""Benchmark P3 on the real engine: 2,000 keyframes at a loopback ComfyUI, 32 in flight.

The goal (from the issue): 2,000 jobs against the loopback ComfyUI with 100 ms
of latency each, 32 in flight: wall ÷ (⌈2000/32⌉ × 0.1 s) ≤ 1.10, and the
engine's CPU per job ≤ 1 ms.

    .venv/bin/python bench/bench_remote.py [--jobs 2000] [--runs 3] [--record]
                                           [--profile out.pstats] [--dir FOLDER]

What runs:

- the loopback ComfyUI (tests/loopback/comfyui.py) in a process of its own,
  jobs concurrent, 100 ms each, so its CPU is not counted as the engine's;
- a generated film of ⌈jobs/2⌉ shots × 2 takes, no cast and no locations, so
  a keyframe needs nothing else; its keyframes go to a `comfyui` backend of
  concurrency 32 (and `[build] concurrency` 32) with a weight-free workflow
  (EmptyImage at {{width}} × {{height}}, a CLIPTextEncode of {{prompt}} and
  {{seed}}, SaveImage), so that every keyframe is a PNG of its own;
- the real engine in this process, as `filmc build --until keyframe --select
  kind:keyframe` runs it: the Executor (compiler.plan's decision, the comfyui
  adapter over HTTP and its websocket, the journal, the media check, the
  object store, the action log and its SQLite index).  Wall and CPU are taken
  around `Executor.run()`; CPU is this process's, every thread, user and
  system, ÷ jobs; the event-loop thread's share is shown apart;
- the baseline, in the same run: the ideal ⌈jobs/32⌉ × 0.1 s, and a trivial
  aiohttp client doing the same HTTP work against the same server (one
  websocket; per job POST /prompt, wait for `execution_success`, GET /view,
  32 in flight), so that an overhead can be split between HTTP/server and
  the engine.  Client and engine runs alternate (`--runs`, median reported);
- then, once, the whole `engine.build.build()` (lock, store and state, the
  run, the layout of build/, report.json) on a fresh store.

Each run also says how much CPU the machine's other processes took meanwhile:
on a shared 2-core machine that is the main source of noise.  The projects and
their stores go in a temporary folder in bench/out/ (`--dir` elsewhere).
aiohttp and Pillow are imported (and Pillow's PNG plugin loaded) before any
timing: a `filmc build` pays that once, not per job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TESTS = ROOT / "tests"
sys.path.insert(0, str(HERE))

import aiohttp  # noqa: E402
from bench_check import record  # noqa: E402
from PIL import Image  # noqa: E402

from filmc.compiler.pipeline import compile_film  # noqa: E402
from filmc.engine.build import build as engine_build  # noqa: E402
from filmc.engine.executor import Events, Executor, Options  # noqa: E402
from filmc.engine.journal import NAME as JOURNAL  # noqa: E402
from filmc.engine.journal import Journal  # noqa: E402
from filmc.engine.state import State  # noqa: E402
from filmc.engine.store import Store, location  # noqa: E402

LATENCY = 0.1
CONCURRENCY = 32
GOAL_RATIO = 1.10
GOAL_CPU_MS = 1.0
SHOTS_PER_SCENE = 100

# Weight-free.  The saved image is taken through the text node, which the loopback passes
# along coloured by its text: each job's PNG is its own, as real keyframes are, so every job
# writes a new object to the store.
WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}",
                                                 "batch_size": 1, "color": 0}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}} (seed {{seed}})",
                                                     "clip": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                "filename_prefix": "p3/keyframe"}},
}


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_comfyui(latency: float):
    """The loopback ComfyUI in its own process; yields (url, pid) once it answers."""
    port = free_port()
    # Its messages go to a file, not a pipe: a chatty server never blocks on a full pipe.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "loopback.comfyui", "--port", str(port),
                                 "--latency", str(latency)], cwd=TESTS,
                                stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while not _answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit("the loopback ComfyUI did not start:\n"
                                     + log.read().decode(errors="replace"))
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"GET /system_stats HTTP/1.0\r\n\r\n")
            return b"200 OK" in conn.recv(200)
    except OSError:
        return False


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process `pid` has used so far (Linux; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds every process on the machine has used so far (Linux; NaN elsewhere)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return math.nan
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


@contextlib.contextmanager
def meter(server_pid: int):
    """Wall, this process's CPU (user, system, this thread), the server's CPU, and what
    the machine's other processes used meanwhile (the noise of a shared machine)."""
    out: dict[str, float] = {}
    t0, th0, s0, m0 = os.times(), time.thread_time(), server_cpu(server_pid), machine_busy()
    w0 = time.perf_counter()
    yield out
    out["wall"] = time.perf_counter() - w0
    t1, th1, s1, m1 = os.times(), time.thread_time(), server_cpu(server_pid), machine_busy()
    out["user"], out["system"] = t1.user - t0.user, t1.system - t0.system
    out["cpu"], out["thread"] = out["user"] + out["system"], th1 - th0
    out["server"] = s1 - s0
    out["others"] = max(0.0, (m1 - m0) - out["cpu"] - out["server"])


# -- the film ----------------------------------------------------------------------------------


def write_project(root: Path, url: str, jobs: int, size: str) -> Path:
    """A film whose `jobs` keyframes (2 takes a shot) go to the comfyui backend."""
    shots = math.ceil(jobs / 2)
    (root / "workflows").mkdir(parents=True)
    (root / "workflows" / "keyframe_api.json").write_text(json.dumps(WORKFLOW, indent=1))
    (root / "filmc.toml").write_text(
        f'[steps]\nkeyframe = "comfy"\n\n[build]\nconcurrency = {CONCURRENCY}\n\n'
        f'[backends.comfy]\ntype = "comfyui"\nurl = "{url}"\n'
        f'workflow = "workflows/keyframe_api.json"\nconcurrency = {CONCURRENCY}\n')
    (root / "film.film").write_text(
        f'film "P3" {{\n  size {size}\n  fps 24\n  takes 2\n  part "shots.film"\n}}\n')
    lines = []
    for sc in range(math.ceil(shots / SHOTS_PER_SCENE)):
        lines.append(f"scene sc{sc} {{")
        for i in range(sc * SHOTS_PER_SCENE, min(shots, (sc + 1) * SHOTS_PER_SCENE)):
            lines.append(f'  shot s{i} 2s {{\n    action "Shot {i}: the grass moves in the '
                         f'wind."\n  }}')
        lines.append("}")
    (root / "shots.film").write_text("\n".join(lines) + "\n")
    return root / "film.film"


def compile_program(film: Path, jobs: int) -> tuple[Any, frozenset[str]]:
    compiled = compile_film(film)
    if not compiled.ok:
        raise SystemExit("the benchmark's film does not compile:\n"
                         + "\n".join(str(d) for d in compiled.diags.errors))
    program = compiled.program()
    keyframes = [n for n, d in program.graph.nodes(data=True) if d["kind"] == "keyframe"][:jobs]
    assert len(keyframes) == jobs, len(keyframes)
    return program, frozenset(keyframes)


def options(selection: frozenset[str]) -> Options:
    return Options(jobs=os.cpu_count() or 2, until="keyframe", selection=selection)


def check(outcomes: list, jobs: int) -> None:
    bad = [o for o in outcomes if o.status != "ran"]
    if bad or len(outcomes) != jobs:
        raise SystemExit(f"{len(bad)} of {len(outcomes)} steps did not run "
                         f"(expected {jobs} ran): {bad[0].id}: {bad[0].status} {bad[0].error}"
                         if bad else f"{len(outcomes)} steps, expected {jobs}")


# -- the engine --------------------------------------------------------------------------------


def run_executor(film: Path, jobs: int, server_pid: int, profile: Path | None = None) -> dict:
    """The Executor alone, as engine.build drives it; measured around `run()`."""
    program, selection = compile_program(film, jobs)
    root = Path(program.root)
    with Store.open(location(root, program.store), create=True) as store, \
            State.open(root, create=True) as state:  # type: ignore[union-attr]
        journal = Journal(state.path / JOURNAL)
        cpu0 = time.process_time()
        ex = Executor(program, store, state, journal, options(selection))
        ex.preflight()
        setup_cpu = time.process_time() - cpu0
        assert len(ex.decision.run) == jobs, len(ex.decision.run)
        prof = None
        if profile is not None:
            import cProfile

            prof = cProfile.Profile(time.thread_time)  # CPU, not wall: the cores are shared
            prof.enable()
        with meter(server_pid) as m:
            outcomes = asyncio.run(ex.run())
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)
        journal.close()
    check(outcomes, jobs)
    return {**m, "setup_cpu": setup_cpu}


def run_build(film: Path, jobs: int, server_pid: int) -> dict:
    """`engine.build.build()`: lock, store and state, the run, build/ laid out, report.json."""
    program, selection = compile_program(film, jobs)
    with meter(server_pid) as m:
        result = engine_build(program, options(selection), Events())
    check(result.outcomes, jobs)
    return m


# -- the baseline: a trivial client ------------------------------------------------------------


async def trivial_client(url: str, jobs: int, concurrency: int, size: str) -> None:
    """The same HTTP work with nothing else: one websocket, then per job POST /prompt,
    wait for its `execution_success`, GET /view of the file; `concurrency` in flight."""
    width, height = (int(v) for v in size.split("x"))
    client = uuid.uuid4().hex
    waiting: dict[str, asyncio.Future] = {}
    outputs: dict[str, dict] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        ws = await http.ws_connect(f"ws{url[4:]}/ws", params={"clientId": client},
                                   max_msg_size=0)

        async def read() -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                data = m.get("data") or {}
                pid = data.get("prompt_id")
                if m.get("type") == "executed":
                    outputs.setdefault(pid, {}).update(data["output"])
                elif m.get("type") == "execution_success" and pid in waiting:
                    waiting.pop(pid).set_result(outputs.pop(pid, {}))

        reader = asyncio.get_running_loop().create_task(read())
        todo = iter(range(jobs))

        async def worker() -> None:
            for i in todo:
                pid = str(uuid.uuid4())
                graph = {**WORKFLOW,
                         "1": {**WORKFLOW["1"], "inputs": {**WORKFLOW["1"]["inputs"],
                                                           "width": width, "height": height}},
                         "2": {**WORKFLOW["2"], "inputs": {**WORKFLOW["2"]["inputs"],
                                                           "text": f"Shot {i} (seed {i})"}}}
                done = waiting[pid] = asyncio.get_running_loop().create_future()
                async with http.post(f"{url}/prompt", json={"prompt": graph, "client_id": client,
                                                            "prompt_id": pid}) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
                got = await done
                image = got["images"][0]
                async with http.get(f"{url}/view", params=image) as r:
                    assert r.status == 200
                    assert await r.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        reader.cancel()
        await ws.close()


def run_client(url: str, jobs: int, size: str, server_pid: int) -> dict:
    with meter(server_pid) as m:
        asyncio.run(trivial_client(url, jobs, CONCURRENCY, size))
    return m


# -- the report --------------------------------------------------------------------------------


def warm_up(folder: Path) -> None:
    """Pillow's plugins load on the first open: once per build, not per job."""
    path = folder / "warm.png"
    Image.new("RGB", (4, 4)).save(path)
    with Image.open(path) as img:
        img.load()


def measure(args: argparse.Namespace) -> dict:
    jobs = args.jobs
    parent = args.dir or HERE / "out"
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="p3-", dir=parent) as tmp, \
            loopback_comfyui(LATENCY) as (url, server_pid):
        work = Path(tmp)
        warm_up(work)
        r: dict[str, Any] = {"client": [], "executor": []}
        for i in range(args.runs):  # interleaved, so that a noisy moment hits both alike
            r["client"].append(run_client(url, jobs, args.size, server_pid))
            r["executor"].append(run_executor(write_project(work / f"run{i}", url, jobs,
                                                            args.size), jobs, server_pid,
                                              args.profile if i == 0 else None))
        if not args.no_build:
            r["build"] = run_build(write_project(work / "build", url, jobs, args.size), jobs,
                                   server_pid)
    return r


def median_run(runs: list[dict]) -> dict:
    """The run of median wall (of an even count, the slower middle one)."""
    return sorted(runs, key=lambda m: m["wall"])[len(runs) // 2]


def report(args: argparse.Namespace, r: dict) -> tuple[list[str], bool]:
    jobs, ms, n = args.jobs, 1000.0, args.runs
    ideal = math.ceil(jobs / CONCURRENCY) * LATENCY
    ex, cl = median_run(r["executor"]), median_run(r["client"])
    best = min(r["executor"], key=lambda m: m["wall"])
    of = f" (median of {n})" if n > 1 else ""
    rows = [(f"ideal ⌈{jobs}/{CONCURRENCY}⌉ × {LATENCY:g} s", ideal, None),
            (f"trivial aiohttp client, same HTTP work{of}", cl["wall"], cl),
            (f"**engine: `Executor.run()`**{of}", ex["wall"], ex)]
    if n > 1:
        rows.append((f"engine: `Executor.run()` (best of {n})", best["wall"], best))
    if "build" in r:
        rows.append(("engine: whole `engine.build()` (1 run)", r["build"]["wall"], r["build"]))
    out = [f"{jobs} keyframes on the `comfyui` backend (concurrency {CONCURRENCY}) against the "
           f"loopback ComfyUI in its own process (jobs concurrent, {LATENCY * ms:.0f} ms each), "
           f"{args.size} PNGs; each goes through the journal, the media check, the object store "
           f"and the action log.", "",
           "| run | wall | ÷ ideal | CPU per job | user / system | event-loop thread "
           "| server CPU per job | other processes |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    per = lambda v: f"{v / jobs * ms:.2f}"  # noqa: E731
    for label, wall, m in rows:
        cells = [label, f"{wall:.2f} s", f"{wall / ideal:.3f}"]
        if m is None:
            cells += [""] * 5
        else:
            cells += [f"{per(m['cpu'])} ms", f"{per(m['user'])} / {per(m['system'])} ms",
                      f"{per(m['thread'])} ms", f"{per(m['server'])} ms",
                      f"{m['others'] / m['wall'] * 100:.0f}% of a CPU"]
        out.append("| " + " | ".join(cells) + " |")
    ratio, cpu_ms = ex["wall"] / ideal, ex["cpu"] / jobs * ms
    ok_wall, ok_cpu = ratio <= GOAL_RATIO, cpu_ms <= GOAL_CPU_MS
    verdict = lambda b: "PASS" if b else "MISS"  # noqa: E731
    out += ["",
            f"- P3 wall ÷ ideal ≤ {GOAL_RATIO:.2f}: {verdict(ok_wall)} ({ratio:.3f}; the trivial "
            f"client {cl['wall'] / ideal:.3f}: HTTP and the server account for "
            f"{cl['wall'] - ideal:+.2f} s, the engine for {ex['wall'] - cl['wall']:+.2f} s more)",
            f"- P3 engine CPU per job ≤ {GOAL_CPU_MS:.0f} ms: {verdict(ok_cpu)} ({cpu_ms:.2f} ms, "
            f"of which {per(ex['system'])} ms in the kernel; the trivial client's HTTP alone "
            f"takes {per(cl['cpu'])} ms)",
            "- each engine run (wall ÷ ideal, CPU per job): "
            + ", ".join(f"{m['wall'] / ideal:.3f} / {per(m['cpu'])} ms" for m in r["executor"]),
            f"- not in the figures: compiling the film, and the Executor's set-up (the plan's "
            f"decision, preflight: {ex['setup_cpu'] * ms:.0f} ms of CPU in all). \"Other "
            f"processes\": what the rest of the machine used meanwhile (a shared machine's noise)."]
    return out, ok_wall and ok_cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3,
                    help="runs of the client and the engine, interleaved (default 3)")
    ap.add_argument("--size", default="64x32", help="keyframe size, WxH (default 64x32)")
    ap.add_argument("--dir", type=Path, help="where the projects and stores go (default: a "
                                             "temporary folder in bench/out/)")
    ap.add_argument("--no-build", action="store_true",
                    help="skip the whole-build run (engine.build)")
    ap.add_argument("--profile", type=Path, help="write a cProfile of the first Executor.run() "
                                                 "here (CPU time of the event-loop thread)")
    ap.add_argument("--record", action="store_true", help="append the figures to BENCHMARKS.md")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when a goal is missed (by default only a failed run does, so "
                         "that `make bench` goes on to the next benchmark)")
    args = ap.parse_args(argv)
    args.runs = max(1, args.runs)
    os.environ.pop("FILMC_STORE", None)  # every run gets a fresh store of its own
    r = measure(args)
    lines, ok = report(args, r)
    print("\n".join(lines))
    if args.record:
        cmd = "`.venv/bin/python bench/bench_remote.py --record`" + \
            (f" (`--jobs {args.jobs}`)" if args.jobs != 2000 else "")
        record(f"P3 on the engine: {args.jobs} jobs at a loopback ComfyUI",
               [f"Run: {cmd}.{dirty()}", "", *lines])
    return 0 if ok or not args.strict else 1


def dirty() -> str:
    """A note when the working tree differs from the commit the section names."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                              "engine", "backends", "compiler", "lang"], cwd=ROOT,
                             capture_output=True, text=True).stdout
    except OSError:
        return ""
    changed = sorted({line[3:].split("/", 1)[0] + "/" for line in out.splitlines() if line})
    return (f" Working tree: uncommitted changes in {', '.join(changed)}." if changed else "")


if __name__ == "__main__":
    raise SystemExit(main())
