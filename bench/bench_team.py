"""The team's remote cache: a whole film found remotely against a whole film found locally.

The example film (examples/wolfpack) is built once, offline (the animatic: free,
every step on this machine), by clone A, with `[cache] remote` on an S3 bucket of
a moto server on loopback: write-through fills the bucket.  Then, in one run, each
measured as the median of several fresh processes:

- **local hit**: clone A again, build/ and the no-op record removed: every step is
  in its own store, and the build lays out build/ from it;
- **remote hit**: clone B, a fresh store each time: every step is found in the
  bucket, and the build fetches what build/ needs (verified), nothing else.

It prints both walls, their ratio, and the bytes the remote hit moved against the
bytes of A's store (what a copy of the whole store would have moved).

    .venv/bin/python bench/bench_team.py [--runs 3] [--record]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_check import record  # noqa: E402

EXAMPLE = ROOT / "examples" / "wolfpack"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
               "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def clone(dest: Path, remote: str) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".filmc", "build"))
    with (dest / "filmc.toml").open("a", encoding="utf-8") as f:
        f.write(f'\n[cache]\nremote = "{remote}"\n')
    return dest


def build(project: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the build and its children, stderr)."""
    before = os.times()
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "filmc", "build", "--offline", "film.film"],
                       cwd=project, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = os.times()
    if r.returncode != 0:
        raise SystemExit(f"build failed in {project}:\n{r.stderr}")
    return wall, (after.children_user - before.children_user
                  + after.children_system - before.children_system), r.stderr


def store_bytes(project: Path) -> tuple[int, int]:
    objs = [p for p in (project / ".filmc" / "objects").glob("*/*") if p.is_file()]
    return len(objs), sum(p.stat().st_size for p in objs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--record", action="store_true", help="append the figures to BENCHMARKS.md")
    args = ap.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FILMC_", "AWS_"))}
    env.update(CREDENTIALS, FILMC_S3_ENDPOINT=url, NO_COLOR="1")
    os.environ.update(CREDENTIALS)
    import boto3

    s3 = boto3.client("s3", endpoint_url=url)
    bucket = f"filmc-bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    remote = f"s3://{bucket}/wolfpack"
    work = Path(tempfile.mkdtemp(prefix="filmc-bench-team-"))
    try:
        a = clone(work / "a", remote)
        first, _cpu, _err = build(a, env)
        print(f"first build of clone A (renders, uploads): {first:.1f} s")
        objects, total = store_bytes(a)
        local, local_cpu, remote_walls, remote_cpu, moved = [], [], [], [], []
        notes = ""
        for _ in range(args.runs):
            shutil.rmtree(a / "build")
            (a / ".filmc" / "noop.json").unlink(missing_ok=True)
            wall, cpu, _ = build(a, env)
            local.append(wall)
            local_cpu.append(cpu)
            b = work / "b"
            shutil.rmtree(b, ignore_errors=True)
            clone(b, remote)
            wall, cpu, err = build(b, env)
            remote_walls.append(wall)
            remote_cpu.append(cpu)
            notes = next((line for line in err.splitlines() if "remote cache:" in line), "")
            moved.append(store_bytes(b))
        load = os.getloadavg()[0]
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    lw, rw = statistics.median(local), statistics.median(remote_walls)
    lc, rc = statistics.median(local_cpu), statistics.median(remote_cpu)
    b_objects, b_bytes = moved[-1]
    rows = [
        ("local hit (own store), wall", f"{lw:.2f} s", f"CPU {lc:.2f} s"),
        ("remote hit (fresh store, S3 on loopback), wall", f"{rw:.2f} s", f"CPU {rc:.2f} s"),
        ("remote ÷ local, wall", f"{rw / lw:.2f}×", f"CPU {rc / lc:.2f}×"),
        ("objects in a full store (clone A)", f"{objects}", f"{total / 1e6:.2f} MB"),
        ("objects in clone B's store after its build", f"{b_objects}",
         f"{b_bytes / 1e6:.2f} MB"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, v, extra in rows:
        print(f"{name:<{width}}  {v:>9}  {extra}")
    print(notes.strip())
    print(f"load average (1 min) at the end: {load:.1f}; {args.runs} runs each, medians")
    if args.record:
        body = ["| measure | value | |", "| --- | ---: | ---: |",
                *(f"| {n} | {v} | {e} |" for n, v, e in rows),
                "", f"- clone B's build said: `{notes.strip()}`" if notes else "",
                f"- {args.runs} runs each, medians; load average {load:.1f} at the end "
                f"(the machine is shared: wall times are upper bounds)."]
        record("filmc team: a remote-cache hit for the whole example film vs a local hit",
               body)


if __name__ == "__main__":
    main()
