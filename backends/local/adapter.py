"""The `local` backend: an offline animatic, rendered on this machine.

It follows the same protocol as a service (backends/protocol.py), only every
job is done when `submit` returns: a render worker (pool.py, worker.py)
draws a storyboard panel with Pillow or runs ffmpeg, in the work folder.

What decides its output, and so enters its steps' keys: every request field,
the animatic parameters (`params`: framing, palette, camera move, labels),
`RENDERER` (bumped when a drawing or encoding changes) and `DRAWING` (the same for
one kind), the ffmpeg it runs
(its version line) for media steps, and the panel font's content for stills.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ...lang.steps import FIELD_NAMES, KINDS
from ..protocol import Adapter, BackendError, Capabilities, Done, Handle, Request, Setup

RENDERER = "2"  # the animatic's drawing and encoding: bump when every kind's output changes
# One kind's drawing, bumped when only its output changes, so that the others keep their keys
# (3: location pictures as backgrounds, animals and creatures, reference insets, voices that
# follow their description, sheets named after their character; speech 4: said by eSpeak NG;
# film 2: its sound mixed, with stems; film 3: its sound is the `mix` step's; clip and shot
# 2: square pixels, limited range and no colour description in every header, and a shot
# copies its clip's video when the clip already is the shot's; clip 3: zooms rendered at
# a fixed size by `zoompan`, centred on the camera's window and the same bytes every run;
# export 2: the OTIO timeline written as OpenTimelineIO writes it without indentation;
# shot 3 and mix 2: their AAC encoded with fixed addresses, the same bits every run; shot
# 4: written by mp4join, its video then its sound, which the film copies in one piece).
DRAWING = {"sheet": "3", "plate": "3", "keyframe": "3", "speech": "4", "film": "3",
           "mix": "2", "music": "1", "sfx": "1", "clip": "3", "shot": "4", "export": "2"}
PANEL_KINDS = frozenset({"sheet", "plate", "keyframe", "storyboard", "film"})
# What `--cluster` sends to Dask workers (cluster.py): the CPU-heavy kinds.
CLUSTER_KINDS = frozenset({"sheet", "plate", "keyframe", "storyboard", "clip", "lastframe",
                           "speech", "music", "sfx", "mix", "shot", "film"})
FFMPEG_KINDS = frozenset({"clip", "lastframe", "shot", "film", "mix", "speech", "music", "sfx"})


@functools.cache
def ffmpeg_version() -> str:
    """The first line of `ffmpeg -version` (same on every machine with the same build)."""
    from ..ffmpeg import ffmpeg_exe, version_line

    try:
        return version_line(ffmpeg_exe())
    except Exception as e:  # MediaError: no ffmpeg found; the build says so when it runs
        return f"none ({e})"


@functools.cache
def font_digest(override: str | None) -> str:
    """The sha256 of the panel font (`override`, then the bundled one), remembered while
    they are the same files (backends/facts.py): the bundled CJK font is megabytes."""
    from ..facts import remembered
    from .fonts import BUNDLED

    paths = [p for p in (override, str(BUNDLED)) if p]

    def digest() -> str:
        h = hashlib.sha256()
        for path in paths:
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    h.update(f.read())
        return h.hexdigest()

    return remembered(f"font {' '.join(paths)}", paths, digest)


class LocalBackend(Adapter):
    type = "local"
    version = RENDERER
    runs_here = True
    kinds: ClassVar[tuple[str, ...]] = tuple(KINDS)
    key_env: ClassVar[tuple[str, ...]] = ("FILMC_PANEL_FONT", "FILMC_FFMPEG")

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self._pool: Any = None
        self._cluster: Any = None  # cluster.Cluster, connected on the first step it makes
        self._connecting = asyncio.Lock()
        self._cpu = (0.0, 0.0)  # CPU seconds of closed pools' workers: their own, ffmpeg's
        self._base = (0.0, 0.0)  # what a pool kept from an earlier build had used then

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        return frozenset(FIELD_NAMES) | {"params"}

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any], root: Path) -> Capabilities | None:
        if kind not in cls.kinds:
            return None
        return Capabilities(last_frame=kind == "clip")  # the animatic dissolves into it

    @classmethod
    def key_extra(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        extra: dict[str, Any] = {}
        if kind in DRAWING:
            extra["drawing"] = DRAWING[kind]
        if kind == "speech":  # the voices are eSpeak NG's: a new version says lines anew
            from .voice import engine_version

            extra["espeak"] = engine_version()
        if kind in FFMPEG_KINDS:
            extra["ffmpeg"] = ffmpeg_version()
        if kind in PANEL_KINDS:
            extra["font"] = font_digest(os.environ.get("FILMC_PANEL_FONT") or None)
        if kind == "export":  # the files are OpenTimelineIO's and its adapters' writing
            from .interchange import versions

            extra["packages"] = versions()
        return extra

    @classmethod
    def key_files(cls, settings: Mapping[str, Any]) -> tuple[Path, ...]:
        from ..ffmpeg import MediaError, ffmpeg_exe
        from .fonts import BUNDLED

        files = [BUNDLED]
        font = os.environ.get("FILMC_PANEL_FONT")
        if font:
            files.append(Path(font))
        with contextlib.suppress(MediaError):  # no ffmpeg: the build says so when it runs
            files.append(Path(shutil.which(ffmpeg_exe()) or ffmpeg_exe()))
        return tuple(files)

    async def submit(self, request: Request, handle: Handle | None) -> Done:
        spec = {**request.fields.as_dict(), **request.params}
        job = {"kind": request.kind, "spec": spec, "prompt": request.fields.prompt,
               "inputs": [[i.role, str(i.path), i.tags.label, i.tags.character, i.tags.outfit,
                           i.step, i.ext or i.path.suffix] for i in request.inputs],
               "workdir": str(request.workdir)}
        answer = None
        if self.setup.cluster and request.kind in CLUSTER_KINDS:
            answer = await (await self._on_cluster()).call(
                job, [(str(i.path), i.digest) for i in request.inputs], request.workdir)
        if answer is None:  # no cluster, a kind it does not make, or too big to send
            if self._pool is None:
                from . import pool

                self._pool = pool.take(self.setup.workers) or pool.Pool(self.setup.workers)
                self._base = self._pool.cpu()
            answer = await self._pool.call(job, affinity=str(request.step))
        if "error" in answer:
            error = answer["error"]
            if error.get("type") == "bug":
                raise RenderBug(error["message"], error.get("traceback", ""))
            raise BackendError(error["message"])
        return Done(answer["files"], cost=0.0)

    async def _on_cluster(self) -> Any:
        """The cluster (`--cluster`), connected once, in the build's event loop (the CLI
        has checked it before the build, so an unreachable one is seldom found here)."""
        async with self._connecting:
            if self._cluster is None:
                from . import cluster

                address = self.setup.cluster
                assert address is not None
                try:
                    self._cluster = await cluster.open_cluster(address)
                except cluster.ClusterError as e:
                    raise BackendError(f"{e.message}; {e.hint}") from None
            return self._cluster

    def cpu(self) -> tuple[float, float]:
        """CPU seconds its render workers used: (their own, the ffmpegs they ran)."""
        if self._pool is None:
            return self._cpu
        now, base = self._pool.cpu(), self._base
        return (self._cpu[0] + now[0] - base[0], self._cpu[1] + now[1] - base[1])

    async def close(self) -> None:
        if self._cluster is not None:
            cluster, self._cluster = self._cluster, None
            await cluster.close()
        if self._pool is not None:
            from . import pool

            self._cpu = self.cpu()
            kept, self._pool = self._pool, None
            for spare in pool.park(kept):  # kept for the next build (`filmc build --watch`)
                await spare.close()


class RenderBug(Exception):
    """A bug in the renderer (not a failure of the user's input): its worker's traceback."""

    def __init__(self, message: str, traceback: str) -> None:
        super().__init__(f"{message}\n(in the render worker)\n{traceback}")

