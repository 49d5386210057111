"""The team's remote cache: one interface, on S3 (engine/s3remote.py) or in a shared folder.

    remote = open_remote(CacheConfig("s3://studio/wolfpack"))   # or "/mnt/team/filmc"
    remote.put_object(digest, path)          # verified: ChecksumSHA256, and the ETag's MD5
    remote.fetch_object(digest, objects)     # hashed on the way in; `Corrupt` if it lies
    remote.get_actions(keys), remote.put_action(key, outputs, meta)
    won, lease = remote.claim(key, holder)   # a paid job, claimed once across machines

Layout under the prefix (or the folder), the same for both:

    cas/<sha256>                  objects (in a folder: cas/ab/<sha256>)
    ac/<key>.json                 action results: {"key", "outputs", "meta"}, as actions.log
    leases/<key>/<gen>.json       claims on a paid step, one generation a holder

A claim is the creation of the next generation's file, conditional on it not existing
(S3: `PutObject` with `IfNoneMatch="*"`; a folder: `link()` of a written file, which
fails when the name exists): of two machines that claim, or take over an expired claim,
at the same time, exactly one creates the file.  The holder renews its own generation
(S3: `IfMatch` its ETag) while the job runs and shares the job's journal entry in it, so
that whoever takes an expired claim over polls the same job instead of paying again.
Credentials never pass through filmc: boto3 reads AWS_* (and its config files) itself;
an endpoint other than AWS is named by an environment variable (`FILMC_S3_ENDPOINT`,
or `[cache] endpoint_env`).  Every failure is a `RemoteError` (a message, a hint).
"""

from __future__ import annotations

import abc
import contextlib
import errno
import hashlib
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import attrs

from .objects import Objects, fsync_dir, is_digest

CHUNK = 1 << 20
FETCH_THREADS = 16  # actions read at once (one small GET each)
LIST_ABOVE = 64  # more missing keys than this: list `ac/` once instead of a GET a key


class RemoteError(Exception):
    """The remote cache cannot be used for this: a message and what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


class Corrupt(RemoteError):
    """An object whose bytes do not hash to its name: never used."""

    def __init__(self, digest: str, got: str, where: str) -> None:
        super().__init__(f"the remote object {digest} in {where} is corrupt (its bytes hash "
                         f"to {got[:16]}…); it was not used",
                         "delete it from the remote cache (`filmc cache push` uploads the "
                         "intact copy of a client that has one)")
        self.digest = digest


class Missing(RemoteError):
    """The remote cache does not hold what was asked for."""


@attrs.frozen
class Lease:
    """One generation of a claim on a paid step."""

    key: str
    gen: int
    token: str  # the holder's, unique per claim
    host: str
    pid: int
    project: str
    expires: float  # wall-clock seconds (machines' clocks must roughly agree)
    job: dict | None = None  # {"op", "backend", "step", "handle": {"id", "data"}}
    version: str = attrs.field(default="", eq=False)  # S3's ETag; a folder's file stamp

    def live(self, now: float | None = None) -> bool:
        return self.expires > (time.time() if now is None else now)

    def as_json(self) -> bytes:
        return json.dumps({"key": self.key, "gen": self.gen, "token": self.token,
                           "host": self.host, "pid": self.pid, "project": self.project,
                           "expires": self.expires, "job": self.job},
                          sort_keys=True).encode()

    @classmethod
    def of(cls, data: bytes, version: str) -> Lease | None:
        try:
            r = json.loads(data)
            return cls(str(r["key"]), int(r["gen"]), str(r["token"]), str(r["host"]),
                       int(r["pid"]), str(r.get("project", "")), float(r["expires"]),
                       r.get("job") if isinstance(r.get("job"), dict) else None, version)
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def who(self) -> str:
        return f"{self.host} (pid {self.pid})"


def holder(key: str, project: str, seconds: float) -> Lease:
    """A new claim of `key` by this process, `seconds` long (its generation is set when
    it is written)."""
    return Lease(key, -1, uuid.uuid4().hex, socket.gethostname(), os.getpid(), project,
                 time.time() + seconds)


class Remote(abc.ABC):
    """A remote cache: the operations the build and `filmc cache` use, over five
    primitives each kind of storage implements."""

    url: str  # as configured, for messages (never a credential)

    # -- the primitives ------------------------------------------------------------------

    @abc.abstractmethod
    def _read(self, name: str) -> tuple[bytes, str] | None:
        """(bytes, version) of a small file; None when it is not there."""

    @abc.abstractmethod
    def _write(self, name: str, data: bytes, *, create: bool = False,
               version: str | None = None) -> str | None:
        """Write a small file: unconditionally; only if it does not exist (`create`); or
        only if it is still at `version`.  Its new version; None: the condition failed."""

    @abc.abstractmethod
    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(name, size) of every file under `prefix`."""

    @abc.abstractmethod
    def _delete(self, name: str) -> None: ...

    @abc.abstractmethod
    def _exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def _upload(self, name: str, path: Path, sha256: bytes, md5: str) -> None:
        """Upload a file whose hashes are given; RemoteError when what arrived differs."""

    @abc.abstractmethod
    def _download(self, name: str, out: IO[bytes]) -> None:
        """Copy a file into `out`; Missing when it is not there."""

    def ready(self) -> None:
        """RemoteError when the storage itself is not there (a bucket says so when asked;
        a folder that does not exist reads as empty, so it says so here)."""
        return None

    # -- objects -------------------------------------------------------------------------

    def has_object(self, digest: str) -> bool:
        return self._exists(f"cas/{digest}")

    def objects_present(self, digests: Iterable[str]) -> set[str]:
        """Those of `digests` the remote holds (a few at once: one request each)."""
        ordered = sorted(set(digests))
        if not ordered:
            return set()
        with ThreadPoolExecutor(min(FETCH_THREADS, len(ordered))) as pool:
            return {d for d, ok in zip(ordered, pool.map(self.has_object, ordered)) if ok}

    def objects(self) -> dict[str, int]:
        """digest → size of every object the remote holds."""
        return {n.rsplit("/", 1)[-1]: size for n, size in self._list("cas/")
                if is_digest(n.rsplit("/", 1)[-1])}

    def put_object(self, digest: str, path: Path) -> int:
        """Upload a local object, checked: its bytes hash to `digest` before they leave,
        and the storage confirms what it received.  The bytes sent."""
        sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                sha.update(block)
                md5.update(block)
                size += len(block)
        if sha.hexdigest() != digest:
            raise RemoteError(f"the local object {digest} is damaged; it was not uploaded",
                              "build again: the step that made it runs again")
        self._upload(f"cas/{digest}", path, sha.digest(), md5.hexdigest())
        return size

    def fetch_object(self, digest: str, objects: Objects) -> int:
        """Download an object into the local store, hashed on the way: a corrupt one
        raises `Corrupt` and never enters it.  The bytes received."""
        objects.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=objects.tmp, prefix="remote-")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                hashing = _Hashing(f)
                self._download(f"cas/{digest}", hashing)  # type: ignore[arg-type]
            got = hashing.sha.hexdigest()
            if got != digest:
                raise Corrupt(digest, got, self.url)
            objects.take(tmp)
            return hashing.size
        finally:
            tmp.unlink(missing_ok=True)

    # -- actions -------------------------------------------------------------------------

    def action_keys(self) -> set[str]:
        return {n[len("ac/"):-len(".json")] for n, _s in self._list("ac/")
                if n.endswith(".json")}

    def get_action(self, key: str) -> dict | None:
        got = self._read(f"ac/{key}.json")
        if got is None:
            return None
        try:
            record = json.loads(got[0])
        except ValueError:
            return None
        ok = isinstance(record, dict) and record.get("key") == key and \
            isinstance(record.get("outputs"), list) and isinstance(record.get("meta"), dict) \
            and all(isinstance(o, dict) and is_digest(str(o.get("digest", "")))
                    for o in record["outputs"])
        return record if ok else None

    def get_actions(self, keys: Iterable[str]) -> dict[str, dict]:
        """key → {"key", "outputs", "meta"} of those the remote holds (a few at once)."""
        keys = set(keys)
        if len(keys) > LIST_ABOVE:
            keys &= self.action_keys()
        if not keys:
            return {}
        ordered = sorted(keys)
        with ThreadPoolExecutor(min(FETCH_THREADS, len(ordered))) as pool:
            found = dict(zip(ordered, pool.map(self.get_action, ordered)))
        return {k: v for k, v in found.items() if v is not None}

    def put_action(self, key: str, outputs: list[dict], meta: dict) -> None:
        self._write(f"ac/{key}.json", json.dumps(
            {"key": key, "outputs": outputs, "meta": meta}, sort_keys=True).encode())

    # -- claims ----------------------------------------------------------------------------

    def lease(self, key: str) -> Lease | None:
        """The current claim of `key` (its latest generation), if any."""
        gens = sorted((int(n.rsplit("/", 1)[-1][:-5]), n) for n, _s in
                      self._list(f"leases/{key}/") if n.endswith(".json")
                      and n.rsplit("/", 1)[-1][:-5].isdigit())
        for _gen, name in reversed(gens):
            got = self._read(name)
            if got is not None:
                lease = Lease.of(*got)
                if lease is not None:
                    return lease
        return None

    def claim(self, mine: Lease, seconds: float) -> tuple[bool, Lease]:
        """Claim `mine.key`: (True, the claim) when this process now holds it — taken over
        from an expired holder, whose job (if it shared one) it inherits; (False, the live
        claim of another) otherwise."""
        while True:
            current = self.lease(mine.key)
            if current is not None and current.live():
                return False, current
            gen = current.gen + 1 if current is not None else 0
            new = attrs.evolve(mine, gen=gen, expires=time.time() + seconds,
                               job=current.job if current is not None else None)
            version = self._write(self._lease_name(new), new.as_json(), create=True)
            if version is not None:
                return True, attrs.evolve(new, version=version)
            # another machine created that generation first: look again

    def renew(self, lease: Lease, seconds: float, job: dict | None = None) -> Lease | None:
        """Extend the claim (and share `job`); None when it was taken over meanwhile.  The
        write is conditional on the version read, so a renewal never resurrects a claim
        another machine replaced."""
        for _ in range(3):
            current = self.lease(lease.key)
            if current is None or current.token != lease.token:
                return None
            new = attrs.evolve(current, expires=time.time() + seconds,
                               job=job if job is not None else current.job)
            version = self._write(self._lease_name(new), new.as_json(),
                                  version=current.version)
            if version is not None:
                return attrs.evolve(new, version=version)
        return None

    def release(self, lease: Lease) -> None:
        """Drop the claim (its result is uploaded, or there is no job to share): the older
        generations first, this one last, so that the latest generation is never a
        dead holder's."""
        names = sorted(n for n, _s in self._list(f"leases/{lease.key}/"))
        mine = self._lease_name(lease)
        for n in names:
            if n != mine and n < mine:
                self._delete(n)
        current = self.lease(lease.key)
        if current is not None and current.token == lease.token:
            self._delete(mine)

    @staticmethod
    def _lease_name(lease: Lease) -> str:
        return f"leases/{lease.key}/{lease.gen:010d}.json"


class _Hashing:
    """A file being written, hashing what passes."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)


# --- a shared folder ------------------------------------------------------------------------


class FolderRemote(Remote):
    """A folder every machine mounts (NFS, SMB, a synced disk): files written to a
    temporary name, fsynced and renamed (created with `link()`, which fails when the
    name exists, where the write is conditional)."""

    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = root, url

    def ready(self) -> None:
        if not self.root.is_dir():
            raise RemoteError(f"the shared folder `{self.root}` does not exist",
                              "check that it is mounted (a build creates it on its first "
                              "upload)")

    def _path(self, name: str) -> Path:
        if name.startswith("cas/"):
            digest = name[4:]
            return self.root / "cas" / digest[:2] / digest
        return self.root / name

    def _read(self, name: str) -> tuple[bytes, str] | None:
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                return f.read(), f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _os_error("read", path, e) from None

    def _write(self, name: str, data: bytes, *, create: bool = False,
               version: str | None = None) -> str | None:
        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if version is not None:
                got = self._read(name)
                if got is None or got[1] != version:
                    return None
            tmp = self._temp(path, data)
            try:
                if create:
                    try:
                        os.link(tmp, path)
                    except FileExistsError:
                        return None
                else:
                    os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            fsync_dir(path.parent)
            st = path.stat()
            return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
        except OSError as e:
            raise _os_error("write", path, e) from None

    @staticmethod
    def _temp(path: Path, data: bytes) -> Path:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return Path(name)

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                if f.startswith("."):
                    continue  # being written
                full = Path(dirpath) / f
                with contextlib.suppress(FileNotFoundError):
                    size = full.stat().st_size
                    rel = full.relative_to(self.root).as_posix()
                    if rel.startswith("cas/"):
                        rel = f"cas/{f}"
                    yield rel, size

    def _delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(name).unlink()

    def _exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def _upload(self, name: str, path: Path, sha256: bytes, md5: str) -> None:
        dest = self._path(name)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out, open(path, "rb") as f:
                    while block := f.read(CHUNK):
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                # Verify after the put: what the shared disk holds, read back.
                sha = hashlib.sha256()
                with open(tmp, "rb") as f:
                    while block := f.read(CHUNK):
                        sha.update(block)
                if sha.digest() != sha256:
                    raise RemoteError(f"the copy of {dest.name} in {self.url} differs from "
                                      f"what was written; it was not kept",
                                      "check the shared disk, then `filmc cache push`")
                os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
            fsync_dir(dest.parent)
        except OSError as e:
            raise _os_error("write", dest, e) from None

    def _download(self, name: str, out: IO[bytes]) -> None:
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                while block := f.read(CHUNK):
                    out.write(block)
        except FileNotFoundError:
            raise Missing(f"{self.url} does not hold {path.name}") from None
        except OSError as e:
            raise _os_error("read", path, e) from None


def _os_error(verb: str, path: Path, e: OSError) -> RemoteError:
    hint = "check that the shared folder is mounted and writable by you" \
        if e.errno in (errno.EACCES, errno.EROFS, errno.ENOENT) else \
        "free space on the shared disk" if e.errno == errno.ENOSPC else None
    return RemoteError(f"cannot {verb} `{path}` in the shared cache: {e.strerror or e}", hint)


WRITE_ENV = "FILMC_CACHE_WRITE"  # 0 or 1: this machine's say over `[cache] write`


def writes(config: Any, environ: Any = None) -> bool:
    """Whether this client writes to the remote cache: `$FILMC_CACHE_WRITE` (`0`/`1`,
    `false`/`true`) when set — filmc.toml is shared, so who writes is said per machine
    (CI sets 1, a team of read-only clients commits `write = false`) — else `[cache]
    write`."""
    value = (os.environ if environ is None else environ).get(WRITE_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    return bool(config.write)


def open_remote(config: Any, root: Path | None = None,
                environ: Any = None, patient: bool = True) -> Remote:
    """The remote cache `[cache]` configures (compiler.config.CacheConfig); a relative
    folder is relative to the project's folder `root`.  `patient=False`: a bucket that
    does not answer is given up on within seconds (engine/s3remote.py), for readers
    that only inform (`plan`, the language server)."""
    env = os.environ if environ is None else environ
    url: str = config.remote
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        try:
            from .s3remote import S3Remote

            return S3Remote(url, bucket, prefix, env.get(config.endpoint_env) or None, patient)
        except ImportError:
            raise RemoteError("the S3 client (boto3) is not installed",
                              "`pip install boto3`, or reinstall filmc") from None
    if "://" in url and not url.startswith("file://"):
        raise RemoteError(f"`{url}` is not a remote cache filmc knows",
                          'write `remote = "s3://bucket/prefix"` or a folder path')
    path = Path(url[len("file://"):] if url.startswith("file://") else url).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    return FolderRemote(path, url)
