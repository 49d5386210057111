"""The local renderer's worker protocol (backends/local/worker.py): jobs framed as
pickles on the worker's stdin, answers as JSON lines on its stdout."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from fractions import Fraction

from filmc.backends.local.worker import frame, jobs


def test_jobs_come_back_as_they_were_sent_fractions_and_all() -> None:
    big = {"kind": "export", "spec": {"shots": [{"id": f"s{i}", "duration": Fraction(i, 24),
                                                "text": "草原上的狼" * 20} for i in range(5000)]}}
    small = {"kind": "film", "spec": {"fps": Fraction(24000, 1001)}}
    stream = io.BytesIO(frame(big) + frame(small) + frame(small)[:-3])  # the last cut short
    got = [pickle.loads(data) for data in jobs(stream)]
    assert got == [big, small]
    assert got[1]["spec"]["fps"] == Fraction(24000, 1001)


def test_a_worker_answers_an_unreadable_job_and_ends_with_its_stdin() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "filmc.backends.local.worker",
                             str(os.getpid())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    garbage = b"not a pickle"
    out, _err = proc.communicate(len(garbage).to_bytes(8, "big") + garbage, timeout=60)
    answer = json.loads(out.splitlines()[0])
    assert answer["error"]["type"] == "bug"
    assert answer["error"]["message"].startswith("unreadable job")
    assert proc.returncode == 0


def test_a_worker_takes_a_whole_film_job_into_its_pipe_at_once() -> None:
    """A feature's film job (some 0.4 MB) fits the worker's stdin pipe, so the build
    writes it in one go rather than as the event loop comes round (pool.py `_widen`)."""
    import asyncio
    import fcntl

    import pytest

    from filmc.backends.local import pool

    getsize = getattr(fcntl, "F_GETPIPE_SZ", None)
    if getsize is None:
        pytest.skip("no F_GETPIPE_SZ: pipes are not resized on this system")
    with open("/proc/sys/fs/pipe-max-size") as f:
        if int(f.read()) < pool._PIPE_BYTES:
            pytest.skip("this system caps pipes below a film job")

    async def size() -> int:
        p = pool.Pool(1)
        worker = await p._start()
        try:
            stdin = worker.proc.stdin
            assert stdin is not None
            return fcntl.fcntl(stdin.transport.get_extra_info("pipe").fileno(), getsize)
        finally:
            p._idle.append(worker)
            await p.close()

    assert asyncio.run(size()) >= pool._PIPE_BYTES


def test_a_step_goes_back_to_the_worker_that_made_it_last() -> None:
    """Of the idle workers, the one that made the step before gets it again (it keeps
    the OTIO clips it wrote); any other job takes the latest to be idle."""
    import asyncio

    from filmc.backends.local import pool

    async def workers() -> tuple[list[object], list[object]]:
        p = pool.Pool(2)
        bad = {"kind": "no such kind", "spec": {}, "prompt": "", "inputs": [],
               "workdir": "/nonexistent"}
        try:
            # two at once: one worker each
            await asyncio.gather(p.call(bad, affinity="export.otio"),
                                 p.call(bad, affinity="film"))
            first = [p._made_by["export.otio"], p._made_by["film"]]
            assert first[0] is not first[1]
            again = []
            for step in ("film", "export.otio", "film", "export.otio"):
                answer = await p.call(bad, affinity=step)
                assert "error" in answer
                again.append(p._made_by[step])
            return first, again
        finally:
            await p.close()

    (otio, film), again = asyncio.run(workers())
    assert again == [film, otio, film, otio]
