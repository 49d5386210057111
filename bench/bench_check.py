"""Benchmark `filmc check` on the 3,000-shot synthetic film.

    .venv/bin/python bench/bench_check.py            # print the figures
    .venv/bin/python bench/bench_check.py --record   # and append them to bench/BENCHMARKS.md

The goal: `filmc check` cold takes at most 1.5 s wall and 250 MB peak RSS on the
3,000-shot film.  Every run is a fresh `filmc` process, started through a tiny
Python wrapper that spawns it once and reports that one child's wall time and
peak RSS (`getrusage(RUSAGE_CHILDREN).ru_maxrss`), so each figure is one run.

What "cold" means here: each run is a new process with no warm state of filmc's
own (filmc keeps no parse cache between runs).  Two things outlive a run, and
the report says so: Python's `.pyc` files, and Lark's grammar cache, which
`lang/parser.py` (`_cache_path`) writes to `$XDG_CACHE_HOME` or the temp folder.
The benchmark points `XDG_CACHE_HOME` at a folder of its own, deletes the
grammar cache there before the first run (one truly cold run, which builds the
LALR table from the grammar), and then measures the usual runs with the cache
in place.  The film's files are in the OS page cache in every run.

A baseline measures a bare interpreter, and one that imports the same modules
`filmc check` imports, so the report shows how much of the wall time is Python
start-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHMARKS = HERE / "BENCHMARKS.md"
GOAL_WALL_S = 1.5
GOAL_RSS_MB = 250.0
SHOTS = 3000

sys.path.insert(0, str(HERE))
from make_film import write_film  # noqa: E402

# Spawns argv[1:] once; prints its wall time and peak RSS (the wrapper's only child).
_WRAPPER = (
    "import json,resource,subprocess,sys,time\n"
    "t=time.perf_counter()\n"
    "p=subprocess.run(sys.argv[1:],capture_output=True,text=True)\n"
    "w=time.perf_counter()-t\n"
    "r=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(json.dumps({'wall':w,'rss_kb':r,'rc':p.returncode,'out':p.stdout,'err':p.stderr}))\n"
)
_TIMINGS = re.compile(r"timings: parse (\d+) ms, check (\d+) ms, total (\d+) ms")
_IMPORTS = ("import filmc.cli, filmc.lang.check, filmc.lang.loader, filmc.lang.parser, "
            "filmc.lang.diagnostics; filmc.lang.parser._get_parser()")


def filmc_command() -> list[str]:
    """The `filmc` script installed next to this interpreter, as users run it."""
    script = Path(sys.executable).parent / "filmc"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "filmc"]


def measure(argv: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], capture_output=True,
                         text=True, env=env, cwd=ROOT, check=True)
    r = json.loads(out.stdout)
    r["rss_mb"] = r["rss_kb"] / 1024  # Linux reports kilobytes
    m = _TIMINGS.search(r["err"])
    if m:
        r["parse_ms"], r["check_ms"], r["total_ms"] = map(int, m.groups())
    return r


def grammar_cache(env: dict[str, str]) -> Path | None:
    """Lark's grammar cache file for this interpreter and grammar, as lang/parser.py names it."""
    code = ("import os; from importlib import resources; from filmc.lang import parser; "
            "g = resources.files('filmc.lang').joinpath('film.lark').read_text('utf-8'); "
            "p = parser._cache_path(g); print(p or '')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.strip()
    return Path(out) if out else None


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": cpu,
            "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}"}


def record(title: str, body: list[str]) -> None:
    """Append a dated section (machine, Python, commit) with `body` to BENCHMARKS.md."""
    m = machine()
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = ""
    section = "\n".join([
        "", f"## {title} — {when}", "",
        f"Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, Python {m['python']}, {m['os']}"
        + (f"; commit {rev}" if rev else "") + ".", "", *body, "",
    ])
    if not BENCHMARKS.exists():
        BENCHMARKS.write_text("# Benchmarks\n", encoding="utf-8")
    with BENCHMARKS.open("a", encoding="utf-8") as f:
        f.write(section)
    print(f"\nrecorded in {BENCHMARKS.relative_to(ROOT)}")


def fmt_runs(rs: list[dict], key: str, unit: str, scale: float = 1.0) -> tuple[str, str]:
    vals = [r[key] * scale for r in rs if key in r]
    if not vals:
        return "-", "-"
    return f"{statistics.median(vals):.0f} {unit}", f"{min(vals):.0f} {unit}"


def run(runs: int, shots: int, keep: bool) -> tuple[list[tuple[str, str, str]], dict]:
    work = Path(tempfile.mkdtemp(prefix="filmc-bench-"))
    try:
        started = time.perf_counter()
        film = write_film(work / "film", shots)
        gen_s = time.perf_counter() - started
        env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"))
        (work / "cache").mkdir()
        cmd = [*filmc_command(), "check", "--timings", str(film)]

        cache = grammar_cache(env)
        if cache is not None and cache.exists():
            cache.unlink()
        cold = measure(cmd, env)
        if cold["rc"] != 0:
            raise SystemExit(f"filmc check failed on the synthetic film:\n{cold['out']}{cold['err']}")
        summary = cold["out"].strip().splitlines()[-1]
        cache_built = cache is not None and cache.is_file() and cache.stat().st_size > 0

        warm = [measure(cmd, env) for _ in range(runs)]
        bare = [measure([sys.executable, "-c", "pass"], env) for _ in range(runs)]
        imports = [measure([sys.executable, "-c", _IMPORTS], env) for _ in range(runs)]
    finally:
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    ms = 1000.0
    rows = [
        ("check, grammar cache deleted (1 run)", f"{cold['wall'] * ms:.0f} ms",
         f"{cold['rss_mb']:.0f} MB", f"{cold.get('parse_ms', '-')} / {cold.get('check_ms', '-')} / "
         f"{cold.get('total_ms', '-')} ms"),
    ]
    wall_med, wall_min = fmt_runs(warm, "wall", "ms", ms)
    rss_med, rss_min = fmt_runs(warm, "rss_mb", "MB")
    p_med, _ = fmt_runs(warm, "parse_ms", "")
    c_med, _ = fmt_runs(warm, "check_ms", "")
    t_med, _ = fmt_runs(warm, "total_ms", "")
    rows.append((f"check, cold process (median of {runs})", wall_med, rss_med,
                 f"{p_med.strip()} / {c_med.strip()} / {t_med.strip()} ms"))
    rows.append((f"check, cold process (min of {runs})", wall_min, rss_min, ""))
    for label, rs in ((f"python -c pass (median of {runs})", bare),
                      (f"python + filmc imports and parse table (median of {runs})", imports)):
        w, _ = fmt_runs(rs, "wall", "ms", ms)
        m, _ = fmt_runs(rs, "rss_mb", "MB")
        rows.append((label, w, m, ""))

    med_wall = statistics.median(r["wall"] for r in warm)
    worst_rss = max(r["rss_mb"] for r in [cold, *warm])
    facts = {
        "summary": summary, "gen_s": gen_s, "cache_built": cache_built, "cache": cache,
        "wall_ok": med_wall <= GOAL_WALL_S and cold["wall"] <= GOAL_WALL_S,
        "rss_ok": worst_rss <= GOAL_RSS_MB, "med_wall": med_wall, "cold_wall": cold["wall"],
        "worst_rss": worst_rss,
        "startup": statistics.median(r["wall"] for r in imports),
        "outside": statistics.median(r["wall"] - r["total_ms"] / 1000 for r in warm
                                     if "total_ms" in r) if any("total_ms" in r for r in warm)
        else None,
    }
    return rows, facts


def table(rows: list[tuple[str, str, str, str]]) -> str:
    head = ("run", "wall", "peak RSS", "parse / check / total (in process)")
    out = [f"| {' | '.join(head)} |", "| --- | ---: | ---: | ---: |"]
    out += [f"| {' | '.join(r)} |" for r in rows]
    return "\n".join(out)


def verdict(facts: dict) -> list[str]:
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    return [
        f"- wall ≤ {GOAL_WALL_S} s: {ok(facts['wall_ok'])} (median {facts['med_wall']:.2f} s, "
        f"truly cold {facts['cold_wall']:.2f} s)",
        f"- peak RSS ≤ {GOAL_RSS_MB:.0f} MB: {ok(facts['rss_ok'])} (worst {facts['worst_rss']:.0f} MB)",
        f"- Python start-up with filmc's imports (and the parse table) alone takes "
        f"{facts['startup'] * 1000:.0f} ms"
        + (f"; a check run spends {facts['outside'] * 1000:.0f} ms outside its in-process total "
           f"(start-up, imports, printing, exit)" if facts["outside"] is not None else ""),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Benchmark `filmc check` on a 3,000-shot film.")
    p.add_argument("--runs", type=int, default=5, help="measured runs of each kind (default 5)")
    p.add_argument("--shots", type=int, default=SHOTS, help=f"shots in the film (default {SHOTS})")
    p.add_argument("--record", action="store_true", help=f"append the figures to {BENCHMARKS.name}")
    p.add_argument("--keep", action="store_true", help="keep the generated film and cache folder")
    args = p.parse_args(argv)

    rows, facts = run(max(1, args.runs), args.shots, args.keep)
    m = machine()
    print(f"film: {facts['summary']}")
    print(f"generated in {facts['gen_s'] * 1000:.0f} ms; machine: {m['nproc']} CPUs, {m['cpu']}, "
          f"Python {m['python']}")
    print()
    print(table(rows))
    print()
    print("\n".join(verdict(facts)))
    note = ("Cold = a new `filmc` process per run; filmc keeps no state between runs. "
            "Python's .pyc files exist in every run; Lark's grammar cache was deleted before the "
            "first run" + (" (which rebuilt it)" if facts["cache_built"] else "")
            + " and exists for the others. The film's files are in the OS page cache.")
    print()
    print(note)
    if args.record:
        record(f"filmc check, {args.shots} shots",
               [f"Film: {facts['summary'].split(': ', 1)[-1]}.", "", table(rows), "",
                *verdict(facts), "", note])
    return 0 if facts["wall_ok"] and facts["rss_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
