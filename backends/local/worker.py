"""A render worker of the local backend: one process, one step at a time, over pipes.

    python -m filmc.backends.local.worker PARENT_PID

Reads one JSON request a line on stdin, renders it (`render.render`), answers
one JSON line on stdout: `{"files": {output: [paths]}}` or `{"error": {"type":
"media" | "backend" | "os" | "bug", "message", "traceback"}}`, with `"cpu": [own,
tools]`: the CPU seconds this process and the programs it ran (ffmpeg) have used
so far, which the build reports (engine/report.py).

A worker must never outlive the build that started it, however that build
ends: it asks the kernel to kill it when its parent dies (PR_SET_PDEATHSIG),
exits when its stdin closes, and starts each ffmpeg the same way, so a
`kill -9` of the build leaves no process behind.  It runs in a session of its
own, so a Ctrl-C at the terminal reaches only the build, which decides.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import traceback
from fractions import Fraction
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that started it ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: stdin's end still ends the worker
        pass


def fraction(value: Any) -> Any:
    """`json.dumps`'s `default`: a fraction (a duration, a frame rate) as JSON that
    `decode` reads back exactly.  The encoder calls it only for what JSON cannot say, so
    a job of thousands of shots is written in one pass in C (`encode` walked it in
    Python first)."""
    if isinstance(value, Fraction):
        return {"__fraction__": f"{value.numerator}/{value.denominator}"}
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(job: Any) -> bytes:
    """One line of JSON: a job as the pool sends it (`decode` reads its fractions)."""
    return json.dumps(job, ensure_ascii=False, default=fraction).encode() + b"\n"


def encode(value: Any) -> Any:
    """JSON-safe: fractions (durations, frame rates) survive the pipe exactly.  (What
    `dumps` writes, as a value.)"""
    if isinstance(value, Fraction):
        return {"__fraction__": f"{value.numerator}/{value.denominator}"}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(obj: dict) -> Any:
    if len(obj) == 1 and "__fraction__" in obj:
        return Fraction(obj["__fraction__"])
    return obj


def cpu_used() -> list[float]:
    """[this process, its finished children]: user + system CPU seconds so far."""
    me, tools = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return [round(me.ru_utime + me.ru_stime, 6), round(tools.ru_utime + tools.ru_stime, 6)]


def render_job(job: dict[str, Any]) -> dict[str, Any]:
    """The answer to one job (`render.render`'s files), its failure sorted by whose it
    is: the media's or a backend's (the step fails with the message), the disk's, or a
    bug of filmc's (with its traceback).  A Dask worker answers the same way (cluster.py)."""
    from ..ffmpeg import MediaError
    from ..protocol import BackendError
    from . import render

    try:
        return {"files": render.render(**job)}
    except MediaError as e:
        return {"error": {"type": "media", "message": str(e)}}
    except BackendError as e:
        return {"error": {"type": "backend", "message": e.message}}
    except OSError as e:
        return {"error": {"type": "os", "message": f"{e.strerror or e}"
                          + (f": {e.filename}" if e.filename else "")}}
    except Exception as e:
        return {"error": {"type": "bug", "message": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()}}


def main(parent: int) -> None:
    die_with_parent()
    if os.getppid() != parent:  # the build died before we could ask
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .. import ffmpeg
    from . import render

    render.preload()  # the heavy imports, once per worker, before a job

    ffmpeg.PREEXEC = die_with_parent
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            job = json.loads(line, object_hook=decode)
        except ValueError as e:
            answer: dict = {"error": {"type": "bug", "message": f"unreadable job: {e}",
                                      "traceback": traceback.format_exc()}}
        else:
            answer = render_job(job)
        answer["cpu"] = cpu_used()
        out.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]))
