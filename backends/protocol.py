"""The one protocol every backend adapter follows: what the engine asks, what it gets back.

A generation service is slow, paid, throttled, and forgets its results; the
protocol is shaped for that (see ../shared/BACKENDS.md).  The engine drives a
step through an adapter like this:

    handle = adapter.prepare(request)        # optional: a job id chosen by the client
    got = await adapter.submit(request, handle)   # -> Handle (a job to poll) | Done
    while isinstance(got, Handle):           # the handle is journaled before the first poll
        got = await adapter.poll(handle)     # -> Pending | Done; may wait for news
    files = await adapter.fetch(got, request)   # download into request.workdir, by output name

Every failure is a `ServiceError` whose `kind` tells the engine what to do:
retry (`TRANSIENT`, `RATE_LIMITED` after `retry_after`), stop submitting to
the backend (`CREDIT`, `AUTH`), or fail the step and say why (`POLICY`,
`INVALID`, `FAILED`).  A submit is retried only when it provably did nothing
billable (`unbilled`), or when the adapter chose the job's id (`prepare`) and
the service, asked by that id, does not know it: nothing is paid twice.

What an adapter declares about itself, read at compile time without
constructing it (class attributes and class methods): `type`, `version`,
whether it runs on this machine (`runs_here`: bounded by `--jobs`), the secret
settings it needs, the settings that name project files (keyed by content),
which request fields and settings change its output per step kind
(`key_fields`, `key_settings`, `key_extra`), what it can honour per step kind
(`capabilities`), and problems with its settings (`check_settings`).
`Adapter` gives the defaults; a third-party adapter subclasses it and registers
an entry point in the `filmc.backends` group.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Protocol

import attrs

from ..lang.steps import FIELD_NAMES, Fields, Output, StepId, Tags

Json = Any  # what json.dumps accepts: handles and results are journaled as JSON


class FailureKind(enum.Enum):
    TRANSIENT = "transient"  # 5xx, a dropped connection, a timeout: try again later
    RATE_LIMITED = "rate_limited"  # throttled: try again after `retry_after`
    POLICY = "policy"  # the content was refused: never retried, the shot fails with the reason
    CREDIT = "credit"  # out of credit or quota: nothing more is submitted to this backend
    AUTH = "auth"  # the key was refused: nothing more is submitted to this backend
    INVALID = "invalid"  # the request is wrong (400, 422, a workflow node's error)
    NOT_FOUND = "not_found"  # the service does not know this job
    EXPIRED = "expired"  # a result can no longer be downloaded
    FAILED = "failed"  # the job ran and failed at the service


RETRYABLE = frozenset({FailureKind.TRANSIENT, FailureKind.RATE_LIMITED})
# Failures after which a backend takes no more submissions in this build.
STOPS_BACKEND = frozenset({FailureKind.CREDIT, FailureKind.AUTH})


class BackendError(Exception):
    """A step failed in its backend: `message` says why, in the user's terms."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServiceError(BackendError):
    """A service answered with a failure, or could not be reached.

    `unbilled`: the service provably did nothing billable (the connection failed before
    the request was sent, or the service's documented answer says nothing was made), so
    the same submission may be sent again.  `retry_after`: seconds the service asked us
    to wait.  `status`: the HTTP status, when there was one."""

    def __init__(self, kind: FailureKind, message: str, *, retry_after: float | None = None,
                 unbilled: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.unbilled = unbilled
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


@attrs.frozen
class Input:
    """An input file of a request: the part it plays and what it shows."""

    role: str  # lang.steps ROLES: first_frame, character, location, speech, clip...
    path: Path  # readable; its name ends with the right extension (but see `ext`)
    digest: str  # sha256 of the content (to cache uploads by)
    media: str
    step: str  # the step that made it, or the project file it is
    tags: Tags = Tags()
    # The file's extension.  For a role in lang.steps NAMED (named, never read), and one in
    # IN_PLACE given to the `local` renderer (read by its content), `path` is the store's
    # read-only object, whose name has none.
    ext: str = ""


@attrs.frozen
class Request:
    """One step for a backend to make."""

    step: StepId
    key: str  # the step's content key: unique per distinct piece of work
    backend: str  # the backend's name in filmc.toml
    fields: Fields
    params: Mapping[str, Any]  # what else the kind carries (the animatic's drawing data...)
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]  # what the step must produce, by name
    workdir: Path  # an empty folder for this step's files

    @property
    def kind(self) -> str:
        return self.step.kind

    def of(self, role: str) -> tuple[Input, ...]:
        return tuple(i for i in self.inputs if i.role == role)


@attrs.frozen
class Handle:
    """A job at a service.  Journaled as JSON before the first poll, so a later build can
    poll it again: `id` is the service's (or the client-chosen) job id, `data` whatever
    else poll, fetch and cancel need (which server, which route)."""

    id: str
    data: Mapping[str, Json] = attrs.field(factory=dict)


@attrs.frozen
class Pending:
    status: str = "queued"  # the service's own word, for the progress display
    progress: float | None = None  # 0..1 where the service says
    wait: float | None = None  # seconds before another poll is useful, where known


@attrs.frozen
class Done:
    """A finished job: `outputs` describes where each declared output is (a URL, a file
    on the service, a file already in the work folder); `cost`, what the service
    reports it charged, in the project's currency (None: it does not say)."""

    outputs: Mapping[str, Json]
    cost: float | None = None
    note: str = ""


@attrs.frozen
class Capabilities:
    """What a backend can honour for one step kind; filmc warns before spending when a
    shot asks for more.  None in a field means "anything"."""

    seed: bool = True
    negative: bool = True
    references: int | None = None  # how many reference images it takes (0: none)
    first_frame: bool = True
    last_frame: bool = False
    durations: tuple[Fraction, ...] | None = None  # the clip lengths it can make
    sizes: tuple[tuple[int, int], ...] | None = None  # the frame sizes it can make
    aspect_ratios: tuple[str, ...] | None = None
    prompt_chars: int | None = None  # the longest prompt it reads (longer ones are cut)


@attrs.frozen
class SettingProblem:
    """A problem with one setting of a backend in filmc.toml, found at compile time."""

    setting: str
    message: str
    help: str | None = None
    warning: bool = False


class UploadCache(Protocol):
    """Remembers what an adapter uploaded, by content digest, so that a reference image
    goes to a service once.  `scope` separates services (adapter type and server)."""

    def get(self, scope: str, digest: str) -> Json | None: ...

    def put(self, scope: str, digest: str, value: Json) -> None: ...


@attrs.frozen
class Setup:
    """What an adapter is constructed with."""

    name: str  # the backend's name in filmc.toml
    settings: Mapping[str, Any]  # as written; file settings as absolute paths
    root: Path  # the project folder
    secret: Callable[[str], str]  # a secret setting, read from its environment variable now
    uploads: UploadCache
    workers: int = 1  # processes it may run at once on this machine (runs_here adapters)
    # A Dask scheduler's address (`--cluster`, `[build] cluster`): where the local backend
    # sends its CPU-heavy renders instead (backends/local/cluster.py); None: this machine.
    cluster: str | None = None


class Backend(Protocol):
    """An adapter instance, one per backend per build."""

    def prepare(self, request: Request) -> Handle | None: ...

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done: ...

    async def poll(self, handle: Handle) -> Pending | Done: ...

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]: ...

    async def cancel(self, handle: Handle) -> None: ...

    async def close(self) -> None: ...


class Adapter:
    """The defaults of an adapter class; subclass it, set `type`, override what differs."""

    type: ClassVar[str] = ""
    version: ClassVar[str] = "1"  # bump when the same request would give other output
    runs_here: ClassVar[bool] = False  # CPU work on this machine, bounded by `--jobs`
    secrets: ClassVar[tuple[str, ...]] = ()  # secret settings it needs, e.g. ("api_key",)
    file_settings: ClassVar[tuple[str, ...]] = ()  # settings naming project files
    kinds: ClassVar[tuple[str, ...]] = ()  # the step kinds it can make
    # Environment variables whose value changes what `key_extra` says (a font, a binary):
    # a build after one changed is not a no-op.
    key_env: ClassVar[tuple[str, ...]] = ()

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.name = setup.name
        self.settings = setup.settings

    # -- what the class declares, read at compile time -----------------------------------

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any], root: Path) -> Capabilities | None:
        """What it honours for `kind`; None when it cannot make `kind` at all."""
        return Capabilities() if kind in cls.kinds else None

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        """The request fields that change its output for `kind` (`take` is always keyed).
        `params` counts as one field: adapters that draw from it (the animatic) list it."""
        return frozenset(FIELD_NAMES)

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        """Of the settings that can change output (hosts, timeouts and secrets are already
        out; a file setting is its content's digest), those that do for `kind`: an image
        model's name must not re-key the speech steps of the same backend."""
        return settings

    @classmethod
    def key_extra(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Json]:
        """Facts of this machine that change its output (a renderer's version, a font)."""
        return {}

    @classmethod
    def key_request(cls, kind: str, settings: Mapping[str, Any],
                    fields: Fields) -> Mapping[str, Json]:
        """What a setting makes of this one request, where a setting is a table: the voice
        `voices` gives this line's speaker (so that changing one character's voice re-keys
        that character's lines, not every line)."""
        return {}

    @classmethod
    def key_files(cls, settings: Mapping[str, Any]) -> tuple[Path, ...]:
        """Files of this machine that `key_extra` describes (a renderer's binary, a font):
        the no-op fast path checks them too."""
        return ()

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        return []

    # -- the instance: one backend in one build -----------------------------------------

    def prepare(self, request: Request) -> Handle | None:
        """A job id chosen by the client, for services that take one (journaled before the
        submit, so a build that died mid-submit asks the service by it); None otherwise."""
        return None

    async def submit(self, request: Request, handle: Handle | None) -> Handle | Done:
        raise BackendError(f"the `{self.type}` adapter cannot make `{request.kind}` steps")

    async def poll(self, handle: Handle) -> Pending | Done:
        raise ServiceError(FailureKind.NOT_FOUND, f"the `{self.type}` adapter has no jobs to poll")

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        """The finished job's outputs as files in `request.workdir`, by output name.  The
        default serves an adapter whose `Done.outputs` already names files (a path, or a
        list of paths) that it wrote there."""
        return {name: Path(v) if isinstance(v, str) else [Path(p) for p in v]
                for name, v in done.outputs.items()}

    async def cancel(self, handle: Handle) -> None:
        return None

    async def close(self) -> None:
        return None
