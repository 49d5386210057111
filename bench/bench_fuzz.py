"""Fuzzing the front end: 10,000 hostile inputs, each measured in its own process.

Every input is a project folder: a copy of the example film with one file replaced
or mutated, sometimes with a link, a FIFO or a template added.  Each one runs in a
forked child with a memory limit and a watchdog (so one runaway input is measured,
not fatal) through what each of `filmc check`, `filmc plan --offline` and `filmc fmt`
does, each command in its own child as it is its own process: load and check (`check`);
also read `filmc.toml` and build the step graph, rendering every prompt template
(`plan`); format the file the input changed, or every `.film` file for an input that
adds links or templates (`fmt`); each renders its diagnostics as text and as JSON.
The parent records for each input whether a command ended in a Python exception, and
the longest run and the largest peak RSS of its three commands.

Kinds of input (`KINDS`): random bytes, random Unicode, token soup, mutations of
the example (deletions, duplications, inserted braces, quotes, colons, NUL bytes,
huge numbers, 10,000-character lines, deep nesting), hostile reference paths
(NUL bytes, over-long names, links out of the project, FIFOs, `/dev/zero`,
folders) and hostile prompt templates.

    .venv/bin/python bench/bench_fuzz.py                  # 10,000 inputs (30 min on 2 cores)
    .venv/bin/python bench/bench_fuzz.py -n 500 --seed 7  # a quick look (2 min)
    .venv/bin/python bench/bench_fuzz.py --record         # also append to BENCHMARKS.md

Goal (issue 10): 0 tracebacks, no run over 2 s, peak RSS at most 300 MB.
`tests/test_fuzz.py` runs a few hundred of the same inputs in `make test`.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import random
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "wolfpack"
GOAL_SECONDS = 2.0
GOAL_MB = 300
WATCHDOG_S = 20  # a child still running after this is killed (and counted as over time)
MEMORY_LIMIT_MB = 2048  # a child that asks for more gets MemoryError (and is counted)

KINDS = ("bytes", "unicode", "soup", "mutation", "paths", "template")
TOKENS = [
    "{", "}", "\n", "shot", "scene", "film", "use", "character", "location", "preset", "camera",
    "cast", "CHEN(winter)", '"text"', '"', '""', "4s", "0:04", "96f", "1920x1080", "2.39:1",
    "35mm", "#f4a259", "(quietly)", ":", ",", "EXT", "NIGHT", "// c", "std.camera", "ref",
    '"refs/x.png"', "outfit", "at", "takes", "candidates", "fps", "size", "-1", "\\", "狼",
    "（", "）", "：", "“", "”", " ", "\t", "\x00", "9" * 400, "1e999", "part", '"cast.film"',
]
HUGE = ["9" * 40, "9" * 400, "9" * 5000, "10000000", "99999999999999999999", "1" + "0" * 30,
        "0." + "0" * 300 + "1"]
ATTR_LINES = [  # lines a mutation inserts into a block, with numbers to be made huge
    "takes {n}", "candidates {n}", "fps {n}", "size {n}x{n}", "aspect {n}:1", "seed {n}",
    "camera {n}mm", "duration {n}s", "duration {n}f", "duration {n}ms", "duration {n}:00",
]


def _example_files() -> dict[str, bytes]:
    out = {}
    for p in sorted(EXAMPLE.rglob("*")):
        rel = p.relative_to(EXAMPLE)
        if p.is_file() and rel.parts[0] not in ("build", ".filmc"):
            out[str(rel)] = p.read_bytes()
    return out


FILES = _example_files()
FILM_FILES = sorted(k for k in FILES if k.endswith(".film"))


# --- making inputs -------------------------------------------------------------------------


def _random_unicode(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            out.append(chr(rng.randrange(32, 127)))
        elif r < 0.6:
            out.append(rng.choice("\n\t{}\":"))
        elif r < 0.9:
            out.append(chr(rng.randrange(0x80, 0x3000)))
        else:
            c = rng.randrange(0, 0x110000)
            out.append(chr(c) if not 0xD800 <= c < 0xE000 else "?")
    return "".join(out)


def _mutate(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(len(lines)) if lines else 0
        line = lines[i] if lines else ""
        k = rng.randint(0, len(line))
        op = rng.choice(["delete", "dup", "brace", "quote", "colon", "nul", "huge", "long",
                         "deep", "attr", "token", "cut", "quotes"])
        if op == "delete" and lines:
            del lines[i:i + rng.randint(1, 4)]
        elif op == "dup" and lines:
            lines[i:i] = lines[i:i + rng.randint(1, 6)] * rng.randint(1, 50)
        elif op in ("brace", "quote", "colon", "nul", "token"):
            tok = {"brace": rng.choice("{}"), "quote": '"', "colon": rng.choice([":", "："]),
                   "nul": "\x00", "token": rng.choice(TOKENS)}[op]
            lines[i:i + 1] = [line[:k] + tok * rng.choice([1, 1, 2, 10]) + line[k:]]
        elif op == "huge":
            lines[i:i + 1] = [line[:k] + rng.choice(HUGE) + line[k:]]
        elif op == "long":
            piece = rng.choice(['""', "a", "狼", "{", '" "', "x ", "\t", "é"])
            lines[i:i + 1] = [line[:k] + piece * (10_000 // len(piece)) + line[k:]]
        elif op == "deep":
            depth = rng.choice([50, 200, 500, 2000])
            open_, close = rng.choice([("a {\n", "}\n"), ("{", "}"), ("shot s {\n", "}\n")])
            lines.insert(i, open_ * depth + close * depth * rng.choice([0, 1]))
        elif op == "attr":
            n = rng.choice(HUGE + ["0", "-1", "33", "1000"])
            lines.insert(i, "  " + rng.choice(ATTR_LINES).format(n=n))
        elif op == "cut" and lines:
            a = rng.randint(0, len(line))
            lines[i] = line[:a] + line[rng.randint(a, len(line)):]
        elif op == "quotes":
            lines.insert(i, "  action " + '"" ' * rng.randint(10, 3000))
    return "\n".join(lines)


def _hostile_paths(rng: random.Random, case: dict) -> None:
    """A `ref`, `part` or `use` naming something that must never be read as a project file."""
    target = rng.choice(["nul", "long", "deep", "link_out", "link_dev", "fifo", "folder",
                         "link_loop", "dotdot", "link_in"])
    name = {
        "nul": "refs/a\x00b.png", "long": "refs/" + "a" * rng.choice([300, 5000]) + ".png",
        "deep": "/".join(["d"] * 2000) + ".png", "dotdot": "../" * 50 + "etc/passwd",
    }.get(target, "refs/evil.png")
    if target == "link_out":
        case["links"]["refs/evil.png"] = rng.choice(["/etc/passwd", "/etc", "/", "/proc/self/mem"])
    elif target == "link_dev":
        case["links"]["refs/evil.png"] = rng.choice(["/dev/zero", "/dev/urandom", "/dev/stdin"])
    elif target == "link_loop":
        case["links"]["refs/evil.png"] = "evil.png"
    elif target == "link_in":
        case["links"]["refs/evil.png"] = "chen_front.png"  # inside: allowed
    elif target == "fifo":
        case["fifos"].append("refs/evil.png")
    elif target == "folder":
        name = "refs"
    where = rng.choice(["ref", "part", "use"])
    film = case["files"]["film.film"].decode()
    if where == "ref":
        scene = "scenes/02_yurt.film"
        text = case["files"][scene].decode().replace('ref "', 'ref "' + name + '" // ', 1)
        if 'ref "' not in text:
            text = text.replace("{", '{\n  ref "' + name + '"\n', 1)
        case["files"]["cast.film"] = case["files"]["cast.film"].decode().replace(
            'ref "', 'ref "' + name + '" // ', 1).encode()
        case["files"][scene] = text.encode()
    else:
        film_name = name[:-4] + ".film" if name.endswith(".png") else name
        if target in ("link_out", "link_dev", "link_loop", "link_in", "fifo"):
            case["links"] = {k[:-4] + ".film": v for k, v in case["links"].items()}
            case["fifos"] = [k[:-4] + ".film" for k in case["fifos"]]
            if target == "link_in":
                case["links"]["refs/evil.film"] = "../cast.film"
        if where == "part":
            film = film.replace('part "scenes/04_storm.film"', f'part "{film_name}"')
        else:
            film = film.replace('use "cast.film"', f'use "cast.film"\nuse "{film_name}"')
        case["files"]["film.film"] = film.encode()


TEMPLATE_BOMBS = [
    "{{ 'a' * 10**9 }}", "{{ 'ab' * 999999999 }}", "{{ [1] * 10**9 }}", "{{ 10**10**8 }}",
    "{{ range(10**9) | list | length }}", "{% for i in range(10**9) %}x{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
    "{{ 'x' * 100000 }}{{ 'y' * 100000 }}", "{{ ('a' * 1000) * 1000 * 1000 }}",
    "{{ 9 ** 9 ** 9 }}", "{{ 'a' | center(10**9) }}", "{{ '%*d' % (10**9, 1) }}",
    "{{ shot.__class__.__mro__ }}", "{{ ''.join(['a'] * 10**8) }}", "{{ 2 << 10**8 }}",
    "{% set x = 'a' * 1000 %}{{ x * 1000 * 1000 }}", "{{ 'a' * (10**9 | int) }}",
    "{{ lipsum(10**6) }}", "{{ 'a'.ljust(10**9) }}", "{{ 'a' | indent(10**9) }}",
    "{{ 'a{}'.format('b' * 10**4) * 10**5 }}", "{{ range(10**9) | sum }}",
]


def make_case(seed: int, index: int) -> dict:
    """One input: {"kind", "files": {path: bytes}, "links": {path: target}, "fifos": [path]}."""
    rng = random.Random(f"{seed}:{index}")
    kind = KINDS[index % len(KINDS)] if index < len(KINDS) else rng.choices(
        KINDS, weights=[10, 10, 15, 45, 12, 8])[0]
    case: dict = {"kind": kind, "files": dict(FILES), "links": {}, "fifos": []}
    target = rng.choice(FILM_FILES)
    if kind in ("bytes", "unicode", "soup", "mutation"):
        case["format"] = [target]
    if kind == "bytes":
        case["files"][target] = rng.randbytes(rng.choice([10, 200, 5000, 20000]))
    elif kind == "unicode":
        case["files"][target] = _random_unicode(rng, rng.choice([10, 300, 5000])).encode(
            "utf-8", "surrogatepass")
    elif kind == "soup":
        words = [rng.choice(TOKENS) for _ in range(rng.choice([5, 50, 500, 3000]))]
        case["files"][target] = " ".join(words).encode()
    elif kind == "mutation":
        case["files"][target] = _mutate(rng, FILES[target].decode()).encode(
            "utf-8", "surrogatepass")
    elif kind == "paths":
        _hostile_paths(rng, case)
    else:
        bomb = rng.choice(TEMPLATE_BOMBS)
        step = rng.choice(["keyframe", "clip", "sheet", "plate", "speech"])
        case["files"][f"templates/{step}.j2"] = bomb.encode()
    return case


# --- running one input ----------------------------------------------------------------------


def write_case(case: dict, folder: Path) -> Path:
    for rel, data in case["files"].items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for rel, target in case["links"].items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)
        p.symlink_to(target)
    for rel in case["fifos"]:
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.unlink(missing_ok=True)
        os.mkfifo(p)
    return folder / "film.film"


COMMANDS = ("check", "plan", "fmt")


def run_front_end(main: Path, format_files: list[str] | None = None,
                  command: str = "all") -> None:
    """What `filmc check` (`command="check"`), `filmc plan --offline` ("plan") or `filmc
    fmt` ("fmt") does with a project, in process, or all three ("all"); `fmt` on
    `format_files` (default: every `.film` file of the project)."""
    from filmc.compiler.pipeline import compile_film
    from filmc.lang.diagnostics import Diagnostics, Sources, render_all, render_json
    from filmc.lang.fmt import format_text

    if command in ("check", "plan", "all"):
        result = compile_film(main, offline=True, until="check" if command == "check" else "graph")
        diags = result.diags.sorted()
        render_all(diags, result.sources, color=True)
        render_json(diags)
    if command not in ("fmt", "all"):
        return
    paths = ([main.parent / f for f in format_files] if format_files is not None
             else sorted(main.parent.rglob("*.film")))
    sources = Sources()
    for p in paths:
        if p.is_file() and not p.is_symlink():
            try:
                text = p.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # `filmc fmt` reports it as F0407 before formatting
            sources.add(str(p), text)
            fdiags = Diagnostics()
            format_text(text, str(p), fdiags)
            render_all(fdiags.sorted(), sources)


def run_isolated(case: dict, workdir: Path, watchdog_s: float = WATCHDOG_S,
                 memory_mb: int = MEMORY_LIMIT_MB, commands=COMMANDS) -> dict:
    """Run one input through each command, each in its own forked child, as each is its
    own `filmc` process: {"error", "seconds", "peak_mb", "killed", "command"}, the worst
    of them (the first error, the slowest run, the largest peak)."""
    folder = Path(tempfile.mkdtemp(dir=workdir))
    try:
        main = write_case(case, folder)
        runs = [_run_child(main, folder, case.get("format"), c, watchdog_s, memory_mb)
                for c in commands]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    slowest = max(runs, key=lambda r: r["seconds"])
    errors = [f"{r['command']}: {r['error']}" for r in runs if r["error"]]
    return {"error": errors[0] if errors else None, "seconds": slowest["seconds"],
            "cpu": max(r["cpu"] for r in runs),
            "peak_mb": max(r["peak_mb"] for r in runs), "killed": any(r["killed"] for r in runs),
            "command": slowest["command"]}


def _run_child(main: Path, folder: Path, format_files: list[str] | None, command: str,
               watchdog_s: float, memory_mb: int) -> dict:
    """One command on one input in a forked child with a memory limit and a watchdog."""
    r, w = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(r)
        code = 0
        try:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
            os.chdir(folder)
            run_front_end(main, format_files, command)
        except BaseException:
            os.write(w, traceback.format_exc()[-4000:].encode(errors="replace"))
            code = 1
        os._exit(code)
    os.close(w)
    chunks, killed = [], False
    deadline = started + watchdog_s
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            killed = True
            break
        ready, _, _ = select.select([r], [], [], left)
        if ready:
            data = os.read(r, 65536)
            if not data:
                break
            chunks.append(data)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    os.close(r)
    error = b"".join(chunks).decode(errors="replace") or None
    if error is None and not killed and os.waitstatus_to_exitcode(status) != 0:
        error = f"child died: status {status}"
    return {"error": error, "seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024,
            "killed": killed, "command": command}


def warm_up(workdir: Path) -> None:
    """Import and compile once in the parent, so each forked child starts warm (as a
    `filmc` process after its imports would)."""
    folder = Path(tempfile.mkdtemp(dir=workdir))
    run_front_end(write_case({"files": FILES, "links": {}, "fifos": []}, folder))
    shutil.rmtree(folder, ignore_errors=True)


# --- the benchmark ---------------------------------------------------------------------------


_WORKDIR: Path | None = None
_SEED = 0


def _work(i: int) -> dict:
    assert _WORKDIR is not None
    case = make_case(_SEED, i)
    res = run_isolated(case, _WORKDIR)
    res.update(index=i, kind=case["kind"])
    return res


def fuzz(n: int, seed: int, jobs: int = 2, out=sys.stdout) -> dict:
    global _WORKDIR, _SEED
    results = []
    with tempfile.TemporaryDirectory(prefix="filmc-fuzz-") as tmp:
        _WORKDIR, _SEED = Path(tmp), seed
        os.environ["FILMC_STORE"] = str(_WORKDIR / "store")
        warm_up(_WORKDIR)
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        load_before = os.getloadavg()
        started = time.perf_counter()
        # Workers forked from this warm process, each forking one child per input.
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for res in pool.imap_unordered(_work, range(n), chunksize=4):
                results.append(res)
                i = res["index"]
                if res["error"] or res["killed"] or res["seconds"] > GOAL_SECONDS \
                        or res["peak_mb"] > GOAL_MB:
                    first = (res["error"] or ("killed by the watchdog" if res["killed"] else "slow")
                             ).strip().splitlines()[-1]
                    print(f"  #{i} ({res['kind']}, {res['command']}): {res['seconds']:.2f} s, "
                          f"{res['peak_mb']:.0f} MB: {first[:160]}", file=out, flush=True)
                if len(results) % 500 == 0:
                    print(f"{len(results)} inputs, {time.perf_counter() - started:.0f} s",
                          file=out, flush=True)
        total = time.perf_counter() - started
    errors = [r for r in results if r["error"]]
    slow = [r for r in results if r["killed"] or r["seconds"] > GOAL_SECONDS]
    slow_cpu = [r for r in results if r["killed"] or r["cpu"] > GOAL_SECONDS]
    heavy = [r for r in results if r["peak_mb"] > GOAL_MB]
    times = sorted(r["seconds"] for r in results)
    return {
        "n": n, "seed": seed, "jobs": jobs, "total_s": total, "errors": errors, "slow": slow, "heavy": heavy,
        "slow_cpu": slow_cpu, "load": (load_before, os.getloadavg()),
        "max_cpu_s": max(r["cpu"] for r in results),
        "median_s": times[len(times) // 2], "p99_s": times[int(len(times) * 0.99)],
        "max_s": times[-1], "max_mb": max(r["peak_mb"] for r in results),
        "baseline_mb": baseline, "kinds": Counter(r["kind"] for r in results),
        "slowest": max(results, key=lambda r: r["seconds"]),
    }


def report(s: dict) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    kinds = ", ".join(f"{k} {s['kinds'][k]}" for k in KINDS)
    ok = lambda good: "PASS" if good else "FAIL"  # noqa: E731
    return "\n".join([
        f"## Front-end fuzzing, {s['n']:,} inputs — {now}",
        "",
        f"Machine: {os.cpu_count()} CPUs (`nproc`), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; commit {commit} (with uncommitted changes "
        "if any). `python bench/bench_fuzz.py -n "
        f"{s['n']} --seed {s['seed']} --jobs {s['jobs']}`, {s['total_s']:.0f} s in all.",
        f"Inputs: {kinds}.",
        "",
        "| measure | value | goal |",
        "| --- | ---: | ---: |",
        f"| Python exceptions (tracebacks) | {len(s['errors'])} | 0 |",
        f"| runs over {GOAL_SECONDS:.0f} s (wall) | {len(s['slow'])} | 0 |",
        f"| runs over {GOAL_SECONDS:.0f} s of CPU | {len(s['slow_cpu'])} | 0 |",
        f"| runs over {GOAL_MB} MB peak RSS | {len(s['heavy'])} | 0 |",
        f"| wall per input: median / p99 / max | {s['median_s'] * 1000:.0f} / "
        f"{s['p99_s'] * 1000:.0f} / {s['max_s'] * 1000:.0f} ms | ≤ 2000 ms |",
        f"| peak RSS, worst input | {s['max_mb']:.0f} MB | ≤ {GOAL_MB} MB |",
        f"| CPU of the most expensive run | {s['max_cpu_s'] * 1000:.0f} ms | ≤ 2000 ms |",
        "",
        f"- tracebacks = 0: {ok(not s['errors'])}; no run over {GOAL_SECONDS:.0f} s: "
        f"{ok(not s['slow'])} (wall), {ok(not s['slow_cpu'])} (CPU); peak ≤ {GOAL_MB} MB: "
        f"{ok(not s['heavy'])}",
        f"- load average (1 min) {s['load'][0][0]:.1f} at the start, {s['load'][1][0]:.1f} at "
        "the end: the wall times of a loaded machine are longer than the work",
        f"- each command on each input runs in a child forked from a parent that has imported "
        f"filmc and compiled the example once ({s['baseline_mb']:.0f} MB RSS), so the peak RSS "
        "of every child starts there; a run's wall time includes the fork",
        f"- slowest input: #{s['slowest']['index']} ({s['slowest']['kind']}), "
        f"{s['slowest']['seconds'] * 1000:.0f} ms in `filmc {s['slowest']['command']}`",
        "",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10_000, help="how many inputs (default 10,000)")
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                    help="inputs run at once (default: one a CPU)")
    ap.add_argument("--record", action="store_true", help="append the figures to BENCHMARKS.md")
    args = ap.parse_args()
    s = fuzz(args.n, args.seed, args.jobs)
    text = report(s)
    print(text)
    if args.record:
        with open(ROOT / "bench" / "BENCHMARKS.md", "a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0 if not (s["errors"] or s["slow"] or s["heavy"]) else 1


if __name__ == "__main__":
    sys.exit(main())
