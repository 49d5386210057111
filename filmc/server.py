"""`filmc server start|stop|status`: a process that keeps filmc loaded, and the project's
compile memo in memory, so that each command run in the project starts as a fork of it.

A plain `filmc build` after a one-shot edit of a 3,000-shot film spends about 1.1 s
before its first step: Python and filmc's imports (0.3 s), loading the memo the last
command left (0.3 s: filmc/memocache.py), the compile that uses it (0.4 s) and the
build's setup.  `filmc build --watch` pays only the compile, since it keeps the rest
between its rounds; the server gives every command the same, as gradle's daemon and
bazel's server do:

    filmc server start        # in the project: warms up, then runs in the background
    filmc build               # as always: run by a fork of the server, same output and code
    filmc server status       # its pid, the commands it ran, the memos it holds
    filmc server stop

The `filmc` command (`delegate`, before it imports anything else) looks for its
project's server: the socket `.filmc/server.sock` in the folder that holds filmc.toml.
When one answers, it hands it its arguments, current folder, environment and standard
streams (the file descriptors themselves, over the Unix socket); the server forks, and
the child takes them and runs the command as the `filmc` process would have, in a
process whose imports are done and whose memo is read.  The `filmc` process waits and
exits with the child's code; a SIGINT, SIGTERM or SIGHUP it gets (a Ctrl-C) is passed
to the child, which stops as a build stops, and a `filmc` process that dies has its
command stopped with SIGTERM.  Where there is no server, or it does not answer, or the
filmc it runs changed since it started (it then stops itself), the command runs in its
own process as without one; `FILMC_SERVER=off` in the environment runs every command
in its own process, and `FILMC_SERVER=auto` starts the project's server (in the
background, once the command is over) after a command that no server ran.

The server holds the memos that commands run from the project's folder left for its
film (memocache.py: one a variant) and reads each again once a command has written it
anew; a command whose memo file is still the one held uses it without reading it.
What a process keeps for itself from its environment (the ffmpeg it found, the cache
folder, the temporary folder) is looked up again in a child whose environment differs
from the server's.  The socket is the user's alone (mode 0600, in a folder of mode
0700 that the user owns) and, where the system says (Linux), a peer of another user is
refused.  The server stops after `--idle` minutes with no command (3 hours), when its
socket is removed, and at `filmc server stop`, after the commands it runs have ended.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SOCKET = "server.sock"  # in the project's .filmc/
LOG = "server.log"
OFF_ENV = "FILMC_SERVER"  # "off": every command on its own; "auto": a server started
IDLE_MINUTES = 180.0  # bazel's server waits as long
BUSY_SECONDS = 30.0  # a command running longer is not waited for to read the memos again
_HEAD = struct.Struct("!I")  # a request's length, sent with its file descriptors
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_LOCAL = frozenset({"server"})  # commands never handed over
# filmc's stages (pyproject.toml maps each folder to one): what the server imports, and
# whose files it watches for a change of filmc
_PACKAGES = ("filmc", "filmc.lang", "filmc.compiler", "filmc.engine", "filmc.backends",
             "filmc.stdlib")


# --- the client: the `filmc` process ---------------------------------------------------------


def project_root(start: str | None = None) -> Path | None:
    """The nearest folder at or above `start` (the current folder) that holds filmc.toml."""
    from .lang.paths import CONFIG_FILE

    try:
        here = Path(start or os.getcwd()).resolve()
    except OSError:
        return None
    return next((d for d in (here, *here.parents) if (d / CONFIG_FILE).is_file()), None)


def connect(root: Path) -> socket.socket | None:
    """A connection to `root`'s server, or None when none answers."""
    path = root / ".filmc" / SOCKET
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if len(os.fsencode(path)) < 100:
            s.connect(str(path))
        else:  # longer than a socket's address holds: by its folder
            here = os.open(".", os.O_RDONLY)
            try:
                os.chdir(path.parent)
                s.connect(SOCKET)
            finally:
                os.fchdir(here)
                os.close(here)
    except OSError:
        s.close()
        return None
    return s


def _send(s: socket.socket, request: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(request).encode("utf-8", "surrogateescape")
    socket.send_fds(s, [_HEAD.pack(len(data))], fds or [])
    s.sendall(data)


def _lines(s: socket.socket) -> Iterator[str]:
    """The lines the server sends, as they come."""
    buf = b""
    while True:
        try:
            chunk = s.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode("utf-8", "replace")


def delegate(argv: list[str]) -> int | None:
    """Run the command `argv` in the project's server: its exit code, or None to run it
    in this process (no server, one that does not answer, a stale one)."""
    if _setting() == "off" or not argv or argv[0] in _LOCAL \
            or not hasattr(socket, "send_fds"):
        return None
    root = project_root()
    if root is None:
        return None
    _wanted.append(root)  # none has answered yet (`start_wanted`)
    if not os.path.exists(root / ".filmc" / SOCKET):
        return None
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:  # a closed standard stream: nothing to hand over
        return None
    s = connect(root)
    if s is None:
        return None
    child: list[int] = []
    caught: list[int] = []

    def forward(sig: int, _frame: Any) -> None:  # a Ctrl-C: the command's to hear
        caught.append(sig)
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child[0], sig)

    before = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    code: int | None = None
    try:
        with s:
            code = _run(s, argv, child, caught)
    finally:
        if code is None:  # run here after all: as if nothing happened
            for sig, handler in before.items():
                signal.signal(sig, handler)
    if code is None and caught:  # a Ctrl-C before the server took it: not run at all
        print("filmc: interrupted", file=sys.stderr)
        return 130
    return code


def _run(s: socket.socket, argv: list[str], child: list[int], caught: list[int]) -> int | None:
    """Hand the command to the server over `s` and wait for its exit code (None: the
    server would not run it); `child` gets the pid of the fork that runs it, which is
    sent the signals `caught` before it was known."""
    streams = [(f.encoding, f.errors) if f is not None else ("utf-8", "strict")
               for f in (sys.stdin, sys.stdout, sys.stderr)]
    umask = os.umask(0)
    os.umask(umask)
    try:
        _send(s, {"op": "run", "argv": argv, "cwd": os.getcwd(), "umask": umask,
                  "env": dict(os.environ), "streams": streams, "filmc": _which()}, [0, 1, 2])
    except OSError:
        return None
    for line in _lines(s):
        word, _, rest = line.partition(" ")
        if word == "other":  # another filmc's server: not to be replaced
            _wanted.clear()
            return None
        if word == "stopping":
            return None
        if word == "stale":
            print("note: the project's server runs a filmc that changed since it started; "
                  "it stops, and this command runs on its own\n  = help: `filmc server "
                  "start` starts one with this filmc", file=sys.stderr)
            return None
        if word == "pid":
            _wanted.clear()
            child.append(int(rest))
            for sig in caught:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child[0], sig)
        elif word == "exit":
            return int(rest)
    if not child:  # the server went before it took the command: run it here
        return None
    # The server went (killed) while its fork runs the command, which would go on
    # writing to this terminal after this process ended: it is stopped as a Ctrl-C
    # stops it, and waited for.
    import time

    from .engine.executor import alive

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(child[0], signal.SIGTERM)
        deadline = time.monotonic() + 60
        while alive(child[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
    print("error: the project's server stopped before this command ended (killed?); the "
          "command was stopped\n  = help: run it again; `filmc server start` starts the "
          "server again", file=sys.stderr)
    return 3


def _setting() -> str:
    """`FILMC_SERVER`: "off", "auto" or "" (a server is used when one runs)."""
    value = os.environ.get(OFF_ENV, "").strip().lower()
    return "off" if value in ("off", "0", "no", "false") else value


_wanted: list[Path] = []  # the project whose server did not run this process's command


def start_wanted() -> None:
    """With `FILMC_SERVER=auto`: once the command is over, start its project's server
    when none ran the command (in the background, its output to its log), so that the
    commands after it are forks of it."""
    if not _wanted or _setting() != "auto" or not hasattr(os, "fork"):
        return
    import subprocess

    with contextlib.suppress(OSError):
        subprocess.Popen([sys.executable, "-m", "filmc", "server", "start"], cwd=_wanted[0],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)


def _which() -> list[str]:
    """Which filmc this is: its Python, its package's folder, its version."""
    from . import __version__

    return [sys.executable, os.path.dirname(os.path.abspath(__file__)), __version__]


# --- the server -----------------------------------------------------------------------------


def sources_stamp() -> tuple:
    """The files filmc runs from, by name, size and modification time: a server whose
    filmc changed (an upgrade, an edit of its sources) no longer runs commands."""
    import importlib

    found = []
    for name in _PACKAGES:
        folder = os.path.dirname(importlib.import_module(name).__file__ or "")
        for top, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in files:
                if f.endswith((".py", ".lark", ".j2", ".film", ".toml", ".json", ".html")):
                    st = os.stat(os.path.join(top, f))
                    found.append((top, f, st.st_size, st.st_mtime_ns))
    return tuple(sorted(found))


def _env_cached() -> None:
    """Forget what this process found from its environment (a child with another's)."""
    import tempfile

    from .backends import ffmpeg
    from .backends.local import adapter
    from .lang import parsecache

    tempfile.tempdir = None
    for f in (ffmpeg.ffmpeg_exe, adapter.ffmpeg_version, parsecache._folder):
        f.cache_clear()


class Server:
    def __init__(self, root: Path, idle_minutes: float = IDLE_MINUTES) -> None:
        self.root = root
        self.folder = root / ".filmc"
        self.idle = idle_minutes * 60
        self.started = 0.0
        self.commands = 0
        self.children: dict[int, _Command] = {}
        self.stopping = False
        self.stamp: tuple = ()
        self.env = dict(os.environ)
        self.listener: socket.socket | None = None
        self.held: dict[str, tuple] = {}  # memo path → its file's (size, mtime, inode)
        self.memos: list[Path] = []  # the memo files of the film's variants
        self.store: Path | None = None  # the project's store, whose actions are read ahead
        self.log_stamp: tuple | None = None  # its log's, as they were read
        self.last = 0.0  # when the last command ended (or the server started)

    # -- starting --------------------------------------------------------------------------

    def bind(self) -> None:
        """The socket, made the user's alone; a dead server's left behind is replaced."""
        os.chdir(self.root)  # the socket's address is relative: it may be long
        os.makedirs(".filmc", mode=0o700, exist_ok=True)
        st = os.stat(".filmc")
        if st.st_uid != os.getuid():
            raise ServerError(f"{self.folder} is not yours", "start the server as its owner")
        path = os.path.join(".filmc", SOCKET)
        if os.path.exists(path):
            with contextlib.suppress(OSError):
                os.unlink(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            s.bind(path)
        finally:
            os.umask(old)
        s.listen(64)
        s.setblocking(False)
        self.listener = s
        self.inode = os.stat(path).st_ino

    def warm(self) -> None:
        """Import what the commands run, compile the film once (so that what a process
        makes once, the grammar's parser, the templates, the backends, is made), and read
        the memos the commands will look for."""
        import gc
        import importlib
        import pkgutil
        import time

        from . import cli, memocache
        from .project import NoFilm, find_film

        os.chdir(self.root)  # as a command run in the project's folder sees it
        cli._parser()
        for name in _PACKAGES:
            pkg = importlib.import_module(name)
            for info in pkgutil.walk_packages(pkg.__path__, name + "."):
                if info.name.rsplit(".", 1)[-1] == "__main__" or ".lsp" in info.name:
                    continue
                try:
                    importlib.import_module(info.name)
                except Exception:  # an optional dependency that is not installed
                    continue
        try:
            main = find_film()
        except NoFilm:  # none yet: the commands will say why
            pass
        else:
            self.memos = [p for o in (False, True) for b in (False, True)
                          if (p := memocache.path_of(main, memocache.variant(o, b)))]
            from .compiler.pipeline import compile_film
            from .engine.lengths import lookup_for

            with contextlib.suppress(Exception):  # a film that does not compile yet
                result = compile_film(main, said=lookup_for)  # its diagnostics unsaid
                if result.config is not None and result.project is not None:
                    from .engine.store import location

                    self.store = location(Path(result.project.root), result.config.store)
        gc.collect()
        self.stamp = sources_stamp()
        self.refresh()
        gc.freeze()  # what the children share is never written by their collections
        self.started = self.last = time.time()

    # -- the memos -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read again each memo a command wrote since it was read.  The memo read before
        is let go with the collector's help: what was read is frozen (the children's
        collections never write its pages), and a cycle left frozen is never freed."""
        import gc
        import time

        from . import memocache
        from .lang.paths import stamp as file_stamp

        self._follow()
        changed = {path: stamp for path in self.memos
                   if (stamp := file_stamp(path)) != self.held.get(str(path))}
        if not changed:
            return
        t = time.monotonic()
        gc.unfreeze()
        for path in changed:
            memocache.release(path)
            self.held.pop(str(path), None)
        gc.collect()
        for path, stamp in changed.items():
            if stamp is not None:  # (one that cannot be read is not tried again until changed)
                self.held[str(path)] = memocache.hold(path) or stamp
        gc.freeze()
        self._log(f"read {len(changed)} compile memo(s) again in {time.monotonic() - t:.2f} s")

    def _follow(self) -> None:
        """Read the store's actions again once a command has changed its log: a build
        then finds the steps it reuses without asking the index (engine/store.py
        `follow_all`; 0.1 s of a feature's rebuild)."""
        from .engine.store import LOG_NAME, Store, StoreError
        from .lang.paths import stamp as file_stamp

        if self.store is None or (at := file_stamp(self.store / LOG_NAME)) == self.log_stamp:
            return
        self.log_stamp = at
        try:
            store = Store.open(self.store, objects=False)
            if store is not None:
                with contextlib.closing(store):
                    store.follow_all()
        except (OSError, StoreError) as e:  # the builds will say what is wrong with it
            self._log(f"could not read the store's actions: {e}")

    # -- running ---------------------------------------------------------------------------

    def serve(self) -> None:
        import selectors
        import time

        assert self.listener is not None
        sel = self.sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, "listener")
        # A child's end wakes the loop (its exit code goes to its client at once): the
        # signal's number is written to `wake`, which the loop watches.
        wake, woken = socket.socketpair()
        wake.setblocking(False)
        woken.setblocking(False)
        sel.register(wake, selectors.EVENT_READ, "wake")
        signal.set_wakeup_fd(woken.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._stop)
        while not (self.stopping and not self.children):
            for key, _ in sel.select(timeout=0.25):
                if key.data == "listener":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        wake.recv(4096)
                elif key.data[0] == "said":  # a fork says its command's exit code
                    self._said(key.data[1])
                else:  # a client's connection: closed, its command is stopped
                    self._gone(key.data[1])
            self._reap()
            if self.stopping:
                continue
            if not self._socket_ours():
                self._log("the socket was removed: stopping")
                self.stop()
            elif not self.children and time.time() - self.last > self.idle:
                self._log(f"no command for {self.idle / 60:g} minutes: stopping")
                self.stop()
            elif not self._busy():
                self.refresh()
        self._log("stopped")

    def _busy(self) -> bool:
        """Whether a command may soon write what `refresh` reads: one that ended and writes
        its memo, or one that started lately.  One that has run for long (the language
        server, `build --watch`, `review`) does not hold the memos back."""
        import time

        now = time.time()
        return any(c.ended or now - c.started < BUSY_SECONDS for c in self.children.values())

    def _stop(self, _sig: int, _frame: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Take no more commands; those running end first."""
        if self.stopping:
            return
        self.stopping = True
        if self.listener is not None:
            if self._socket_ours():
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.root, ".filmc", SOCKET))
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.listener)
            self.listener.close()

    def _socket_ours(self) -> bool:
        try:
            return os.stat(os.path.join(self.root, ".filmc", SOCKET)).st_ino == self.inode
        except OSError:
            return False

    def _accept(self) -> None:
        import selectors
        import time

        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.setblocking(True)
        conn.settimeout(5)
        fds: list[int] = []
        try:
            peer = _peer(conn)
            if peer == -1:
                self._log("a connection from another user: refused")
                return
            head, fds, _flags, _addr = socket.recv_fds(conn, _HEAD.size, 3)
            if len(head) < _HEAD.size:
                raise OSError("short request")
            (n,) = _HEAD.unpack(head)
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    raise OSError("short request")
                data += chunk
            request = json.loads(data.decode("utf-8", "surrogateescape"))
            conn.settimeout(None)
            op = request.get("op")
            if op == "status":
                conn.sendall(json.dumps(self.status()).encode() + b"\n")
            elif op == "stop":
                self._log("stop asked for")
                self.stop()
                conn.sendall(f"stopping {os.getpid()} {len(self.children)}\n".encode())
            elif op == "run" and len(fds) == 3:
                if request.get("filmc") != _which():
                    conn.sendall(b"other\n")  # it runs on its own
                elif self.stopping:
                    conn.sendall(b"stopping\n")
                elif sources_stamp() != self.stamp:
                    conn.sendall(b"stale\n")
                    self._log("filmc's sources changed: stopping")
                    self.stop()
                elif _threads() > 1:  # a fork copies one thread: it would hold no lock
                    conn.sendall(b"other\n")  # another holds; it runs on its own
                else:
                    said, tell = os.pipe()
                    pid = self._fork(tell, fds, request, peer)
                    os.close(tell)
                    self.commands += 1
                    cmd = self.children[pid] = _Command(pid, conn, said, time.time())
                    self.sel.register(conn, selectors.EVENT_READ, ("client", cmd))
                    self.sel.register(said, selectors.EVENT_READ, ("said", cmd))
                    conn.sendall(f"pid {pid}\n".encode())
                    self._log(f"{pid}: filmc {' '.join(request['argv'][:3])}")
                    conn = None  # type: ignore[assignment]
        except (OSError, ValueError, KeyError, TypeError) as e:
            self._log(f"a request that could not be read: {e}")
        finally:
            for fd in fds:
                os.close(fd)
            if conn is not None:
                conn.close()

    def _fork(self, tell: int, fds: list[int], request: dict[str, Any],
              peer: int | None) -> int:
        pid = os.fork()
        if pid:
            return pid
        code = 3
        try:
            code = _child(self, tell, fds, request, peer)
        except BaseException as e:  # before the command ran (its folder is gone): said
            with contextlib.suppress(OSError):
                os.write(2, f"error: the project's server could not run the command: "
                            f"{e}\n  = help: run it with {OFF_ENV}=off\n".encode())
        finally:
            os._exit(code)

    def _said(self, cmd: _Command) -> None:
        """The fork's word that its command is over (it writes the memo after): its exit
        code, passed to the client, which goes on at once."""
        with contextlib.suppress(OSError):
            line = os.read(cmd.said, 64).decode("ascii", "replace")
            if line.startswith("exit "):
                self._ended(cmd, int(line.split()[1]))
        self._let_go(cmd, "said")

    def _gone(self, cmd: _Command) -> None:
        """The client's connection closed: a client that did not wait for the end (killed)
        has its command stopped."""
        if not cmd.ended:
            self._log(f"{cmd.pid}: its `filmc` process ended: stopping the command")
            with contextlib.suppress(OSError):
                os.kill(cmd.pid, signal.SIGTERM)
        self._let_go(cmd, "conn")

    def _ended(self, cmd: _Command, code: int) -> None:
        import time

        cmd.ended = True
        self.last = time.time()
        self._log(f"{cmd.pid}: exit {code} in {time.time() - cmd.started:.2f} s")
        if cmd.conn is not None:
            with contextlib.suppress(OSError):
                cmd.conn.sendall(f"exit {code}\n".encode())

    def _let_go(self, cmd: _Command, what: str) -> None:
        item = getattr(cmd, what)
        if item is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(item)
        with contextlib.suppress(OSError):
            if isinstance(item, socket.socket):
                item.close()
            else:
                os.close(item)
        setattr(cmd, what, None)

    def _reap(self) -> None:
        import time

        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            cmd = self.children.pop(pid, None)
            if cmd is None:
                continue
            if not cmd.ended:  # killed, or ended before it could say
                code = os.waitstatus_to_exitcode(status)
                self._ended(cmd, 128 - code if code < 0 else code)
            self.last = time.time()
            self._let_go(cmd, "said")
            self._let_go(cmd, "conn")

    def status(self) -> dict[str, Any]:
        import time

        from . import memocache

        return {"pid": os.getpid(), "root": str(self.root),
                "up": round(time.time() - self.started, 1), "commands": self.commands,
                "running": sum(not c.ended for c in self.children.values()), "memos": len(memocache._held),
                "idle_minutes": self.idle / 60, "stale": sources_stamp() != self.stamp, "filmc": _which()}

    def _log(self, what: str) -> None:
        import time

        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {what}", file=sys.stderr, flush=True)


class _Command:
    """A command a fork of the server runs: the client's connection, and the pipe on
    which the fork says the exit code once the command is over (it writes the compile's
    memo after, while the client goes on)."""

    __slots__ = ("pid", "conn", "said", "started", "ended")

    def __init__(self, pid: int, conn: socket.socket, said: int, started: float) -> None:
        self.pid = pid
        self.conn: socket.socket | None = conn
        self.said: int | None = said
        self.started = started
        self.ended = False


def _child(server: Server, tell: int, fds: list[int], request: dict[str, Any],
           peer: int | None) -> int:
    """In the forked child: become the client's `filmc` process and run its command; say
    its exit code (on `tell`, to the server, which tells the client), let the client's
    streams go, and only then write the compile's memo, here (a fork of this large a
    process costs more than the writing), while the client has gone on."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
    said = os.dup2(tell, 3)
    os.closerange(4, 1 << 16)  # the server's: its socket, its other clients' connections
    os.chdir(request["cwd"])
    os.umask(int(request["umask"]))
    env = {str(k): str(v) for k, v in request["env"].items()}
    if env != server.env:
        os.environ.clear()
        os.environ.update(env)
        _env_cached()
    sys.argv = ["filmc", *request["argv"]]
    # The standard streams as the client's Python made them (its encodings; a terminal's
    # output line by line), for as long as the process: never closed.
    (ie, ier), (oe, oer), (ee, eer) = request["streams"]
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        open(0, "rb", closefd=False), encoding=ie, errors=ier)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        open(1, "wb", closefd=False), encoding=oe, errors=oer,  # noqa: SIM115
        line_buffering=os.isatty(1))
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        open(2, "wb", closefd=False), encoding=ee, errors=eer,  # noqa: SIM115
        line_buffering=True)
    if peer is not None:  # the command started as its `filmc` process did (the report)
        from .engine import build

        with contextlib.suppress(OSError, ValueError, IndexError):
            build.STARTED = build.started_ticks(peer)
    from .cli import finish, main

    try:
        code = main(request["argv"])
    except SystemExit as e:  # argparse's --help, --version, usage errors
        code = _exit_code(e)
    code = finish(code, memo=False)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the command is over
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.write(said, f"exit {code}\n".encode())
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(said)
    if "filmc.memocache" in sys.modules:
        from . import memocache

        memocache.write_kept(fork=False)
    return code


def _exit_code(e: SystemExit) -> int:
    """The exit code Python gives a SystemExit that reaches the top (it prints a text)."""
    if e.code is None or isinstance(e.code, int):
        return e.code or 0
    print(e.code, file=sys.stderr)
    return 1


def _threads() -> int:
    import threading

    return threading.active_count()


def _peer(conn: socket.socket) -> int | None:
    """The peer's pid, where the system says (Linux); -1 when it is another user's (the
    socket's mode keeps them out where the system does not say)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid if uid == os.getuid() else -1


# --- `filmc server start|stop|status` -------------------------------------------------------


def add_parsers(sub: Any) -> None:
    c = sub.add_parser("server", help="keep filmc and the film's compile loaded: commands start "
                                      "in a fraction of the time",
                       description="A background process for the project that keeps filmc "
                                   "loaded and the film's compile memo read; every `filmc` "
                                   "command run in the project is then a fork of it "
                                   "(docs/architecture.md, `filmc server`).")
    cs = c.add_subparsers(dest="server_command", metavar="COMMAND")
    cs.required = True
    p = cs.add_parser("start", help="start the project's server (it warms up first)",
                      description="Start the project's server in the background, once it has "
                                  "loaded filmc, compiled the film and read its memos; its "
                                  "log is .filmc/server.log.")
    p.add_argument("--foreground", action="store_true",
                   help="run in this process, logging to stderr, until Ctrl-C")
    p.add_argument("--idle", type=float, default=IDLE_MINUTES, metavar="MINUTES",
                   help=f"stop after this long with no command (default {IDLE_MINUTES:g})")
    p.set_defaults(run=_start)
    for name, what, run in (("stop", "stop the project's server, once the commands it runs "
                                     "have ended", _stop_cmd),
                            ("status", "say whether the project's server runs, and what it "
                                       "holds (exit 1: none runs)", _status_cmd)):
        p = cs.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        p.set_defaults(run=run)


def _root() -> Path | int:
    from .common import fail

    root = project_root()
    if root is None:
        return fail("there is no filmc.toml in this folder or above it",
                    "run it in a project (`filmc init` starts one)")
    return root


def _ask(root: Path, op: str) -> str | None:
    """The server's first line of answer to `op`, or None when none answers."""
    s = connect(root)
    if s is None:
        return None
    with s:
        try:
            _send(s, {"op": op})
        except OSError:
            return None
        return next(_lines(s), None)


def _start(args: Any) -> int:
    import time

    from .common import fail

    root = _root()
    if isinstance(root, int):
        return root
    if not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        return fail("`filmc server` needs fork and Unix sockets, which this system lacks",
                    "run the commands on their own")
    if args.idle <= 0:
        return fail("--idle must be a positive number of minutes", "e.g. --idle 60")
    said = _ask(root, "status")
    if said is not None:
        st = json.loads(said)
        if st.get("filmc") != _which():
            return fail(f"the server running for {root} (pid {st['pid']}) is another "
                        f"filmc's: {st.get('filmc', ['?', '?'])[1]}",
                        "`filmc server stop` stops it, and this filmc's commands run on "
                        "their own until then")
        if not st["stale"]:
            print(f"filmc server: already running for {root} (pid {st['pid']})")
            return 0
        print(f"filmc server: the one running (pid {st['pid']}) runs a filmc that changed "
              f"since it started: stopping it")
        _stop_cmd(args)
    t = time.monotonic()
    server = Server(root, args.idle)
    if args.foreground:
        try:
            server.warm()
            server.bind()
        except ServerError as e:
            return fail(e.message, e.hint)
        print(f"filmc server: ready for {root} (pid {os.getpid()}) in "
              f"{time.monotonic() - t:.1f} s; Ctrl-C stops it", file=sys.stderr)
        server.serve()
        return 0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the server: its own session, its output to the log, started
        os.close(r)
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            os.makedirs(root / ".filmc", mode=0o700, exist_ok=True)
            log = os.open(root / ".filmc" / LOG,
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            server.warm()
            server.bind()
            server._log(f"ready for {root} (pid {os.getpid()})")
            os.write(w, f"ready {os.getpid()}\n".encode())
            os.close(w)
            server.serve()
        except ServerError as e:
            os.write(w, f"error {e.message}\t{e.hint}\n".encode())
        except BaseException as e:
            os.write(w, f"error the server could not start: {e!r}\tits log is "
                        f"{root / '.filmc' / LOG}\n".encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        said = f.readline().decode("utf-8", "replace").rstrip("\n")
    word, _, rest = said.partition(" ")
    if word != "ready":
        message, _, hint = rest.partition("\t")
        return fail(message or "the server ended as it started",
                    hint or f"its log is {root / '.filmc' / LOG}")
    print(f"filmc server: ready for {root} (pid {rest}) in {time.monotonic() - t:.1f} s; "
          f"`filmc server stop` stops it")
    return 0


def _stop_cmd(args: Any) -> int:
    import time

    from .engine.executor import alive

    asked = _asked("stop")
    if not isinstance(asked, str):
        return 0 if asked is None else asked
    _word, pid, running = asked.split(" ")
    if int(running):
        print(f"filmc server: stopping (pid {pid}) once its {running} command(s) end")
    while alive(int(pid)):
        time.sleep(0.02)
    print(f"filmc server: stopped (pid {pid})")
    return 0


def _status_cmd(args: Any) -> int:
    asked = _asked("status")
    if not isinstance(asked, str):
        return 1 if asked is None else asked
    st = json.loads(asked)
    print(f"filmc server: running for {st['root']} (pid {st['pid']}), up {st['up']:.0f} s\n"
          f"  filmc {st['filmc'][2]} from {st['filmc'][1]}"
          f"{' (changed since: it stops at the next command)' if st['stale'] else ''}\n"
          f"  commands run: {st['commands']} ({st['running']} running now)\n"
          f"  compile memos held: {st['memos']}\n"
          f"  stops after {st['idle_minutes']:g} minutes with no command")
    return 0


def _asked(op: str) -> str | int | None:
    """The project's server's answer to `op`; None when none runs, or the exit code of
    an error (each said)."""
    root = _root()
    if isinstance(root, int):
        return root
    said = _ask(root, op)
    if said is None:
        print("filmc server: none runs for this project")
    return said


class ServerError(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
