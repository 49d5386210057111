"""One build of a project at a time: an exclusive `flock` on `.filmc/lock`.

A second build waits, saying so, or refuses (`wait=False`).  The lock file
holds the holder's pid, for the message; the kernel drops the lock when the
holder dies, however it dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .db import StoreError, disk_error


@contextlib.contextmanager
def project_lock(state: Path, wait: bool) -> Iterator[None]:
    try:
        state.mkdir(parents=True, exist_ok=True)
        fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise disk_error(f"create `{state / 'lock'}`", e, state) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if not wait:
                raise StoreError(f"another filmc build of this project is running "
                                 f"(pid {holder})", "wait for it, or run without --no-wait"
                                 ) from None
            print(f"filmc: waiting for another build of this project (pid {holder}) to "
                  f"finish…", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def held(path: Path, root: Path) -> Iterator[None]:
    """An exclusive `flock` on the file `path` (made, with its folder, if absent) while
    the block runs: one writer at a time of a record beside it, held for milliseconds.
    `root`: the folder a failure to make it is said of."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise disk_error(f"create `{path}`", e, root) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
