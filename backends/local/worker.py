"""A render worker of the local backend: one process, one step at a time, over pipes.

    python -m filmc.backends.local.worker PARENT_PID

Reads one job at a time on stdin (a pickle after its length: `frame`), renders
it (`render.render`), answers one JSON line on stdout: `{"files": {output:
[paths]}}` or `{"error": {"type": "media" | "backend" | "os" | "bug", "message",
"traceback"}}`, with `"cpu": [own, tools]`: the CPU seconds this process and the
programs it ran (ffmpeg) have used so far, which the build reports
(engine/report.py).

A worker must never outlive the build that started it, however that build
ends: it asks the kernel to kill it when its parent dies (PR_SET_PDEATHSIG),
exits when its stdin closes, and starts each ffmpeg the same way, so a
`kill -9` of the build leaves no process behind.  It runs in a session of its
own, so a Ctrl-C at the terminal reaches only the build, which decides.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import pickle
import resource
import signal
import sys
import traceback
from collections.abc import Iterator
from typing import Any, BinaryIO

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that started it ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: stdin's end still ends the worker
        pass


def frame(job: Any) -> bytes:
    """A job as the pool sends it: its pickle, after its length (8 bytes, big-endian).
    A pickle, not JSON: a feature's OTIO export is an 11 MB job, which JSON took 71 ms
    to write and 66 ms to read back (its fractions through a hook on every object),
    pickle 27 and 38; the fractions (durations, frame rates) come back as they were.
    Only the build that started the worker writes to its stdin."""
    data = pickle.dumps(job, pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_HEAD, "big") + data


def jobs(stream: BinaryIO) -> Iterator[bytes]:
    """The jobs on `stream` (pickles, as `frame` writes them), until it ends."""
    while len(head := stream.read(_HEAD)) == _HEAD:
        size = int.from_bytes(head, "big")
        data = stream.read(size)
        if len(data) < size:
            return
        yield data


_HEAD = 8


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


def steady() -> None:
    """The collector of a worker that has loaded its imports: what they made is never
    looked at again (frozen), and a collection waits for 100,000 new objects, as in the
    `filmc` process (cli.py).  A job allocates in bursts and frees what it made: the
    film step reading back 3,000 shots' headers (mp4read.Headers) made 60,000 tuples,
    and the default thresholds walked them a dozen times, 12 ms of a 60 ms join."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def main(parent: int) -> None:
    die_with_parent()
    if os.getppid() != parent:  # the build died before we could ask
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .. import ffmpeg
    from . import render

    render.preload()  # the heavy imports, once per worker, before a job
    steady()

    ffmpeg.PREEXEC = die_with_parent
    out = sys.stdout.buffer
    for data in jobs(sys.stdin.buffer):
        try:
            job = pickle.loads(data)
        except Exception as e:
            answer: dict = {"error": {"type": "bug", "message": f"unreadable job: {e}",
                                      "traceback": traceback.format_exc()}}
        else:
            answer = render_job(job)
        answer["cpu"] = cpu_used()
        out.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
        out.flush()
        if "filmc.backends.local.interchange" in sys.modules:  # after the answer: the
            from . import interchange  # build goes on while the timeline's clips are kept

            interchange.save_clips()


if __name__ == "__main__":
    main(int(sys.argv[1]))
