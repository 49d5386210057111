"""What the two adapters for services that run any model (fal, Replicate) share besides
their protocols: `HostedModel`.

    class Fal(HostedModel):
        async def call(self, method, url, doing, **kwargs) -> Response: ...  # the key, where
        async def submit(self, request, handle): ...    # spec = self.spec(request), then
                                                        # body = await model_input(...)
        async def poll(self, handle): ...               # self.made(kind, find_output(...))

The mapping in filmc.toml (model_inputs.py) gives the class's declarations: what
each kind honours, which fields and settings key its steps, what is wrong in the
table.  A result is found in the model's answer by the mapping's `output`, else
where most models put it (`find_output`), downloaded (or decoded from a data
URI), and kept under its real extension once its first bytes say it is what the
step makes (`keep`).  Images go inline (`data_uri`) or are uploaded once per
build however many steps send them (`once`); the key stays out of every message.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import binascii
import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from ..lang.steps import KINDS
from .http import Http, Response, redact, snippet, where
from .inputs import Once, as_sent, data_url
from .model_inputs import MADE, ModelSpec, read, spec_for, specs
from .protocol import (
    Adapter,
    Capabilities,
    Done,
    FailureKind,
    Request,
    ServiceError,
    SettingProblem,
    Setup,
)
from .results import Media, downloaded, sniff

T = TypeVar("T")


class HostedModel(Adapter, abc.ABC):
    """An adapter for a service that runs any model, mapped in filmc.toml: the mapping's
    declarations, the spec of a request's kind, the images of one build uploaded once,
    results downloaded and checked, and the key kept out of every message.  A subclass
    sends the requests (`call`, `submit`, `poll`) in its service's own protocol."""

    runs_here = False
    secrets = ("api_key",)
    kinds = MADE
    service = ""  # its name, in messages
    own_settings: ClassVar[tuple[str, ...]] = ()  # its settings besides the mapping's
    url_settings: ClassVar[tuple[str, ...]] = ()  # those that name where it is
    url_help = ""  # what to do about a wrong one
    model_help = ""  # what a model id looks like, for a wrong one
    kept = ""  # how long the service keeps results, for an expired download's message

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.http = Http(setup.name, timeout=300)
        self.specs = specs(self.settings)
        self.uploads = Once()

    @classmethod
    def capabilities(cls, kind: str, settings: Mapping[str, Any],
                     root: Path) -> Capabilities | None:
        spec = spec_for(kind, settings)
        return None if spec is None else spec.capabilities()

    @classmethod
    def key_fields(cls, kind: str, settings: Mapping[str, Any]) -> frozenset[str]:
        spec = spec_for(kind, settings)
        return (spec.fields() if spec else frozenset()) | {"take"}

    @classmethod
    def key_settings(cls, kind: str, settings: Mapping[str, Any]) -> Mapping[str, Any]:
        """The model and its mapping for this kind: hosts, uploads, waiting and the other
        kinds' models never re-key a step."""
        spec = spec_for(kind, settings)
        return {} if spec is None else spec.key()

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        """The mapping's problems, then each of `url_settings` that is not an http(s) URL;
        a subclass adds its own settings' and then `model_problems`."""
        problems = read(settings, cls.type, cls.own_settings)[1]
        for name in cls.url_settings:
            value = settings.get(name)
            if value is not None and not (isinstance(value, str)
                                          and value.startswith(("http://", "https://"))):
                problems.append(SettingProblem(name, f"`{name}` must be an http(s) URL",
                                               cls.url_help))
        return problems

    @classmethod
    def model_problems(cls, settings: Mapping[str, Any]) -> list[SettingProblem]:
        """A problem for each kind whose model is not one of the service's ids."""
        return [SettingProblem(kind if isinstance(settings.get(kind), Mapping) else "model",
                               f"`{spec.model}` is not a {cls.service} model id", cls.model_help)
                for kind, spec in specs(settings).items()
                if spec.model and not cls.model_id(spec.model)]

    @classmethod
    def model_id(cls, model: str) -> bool:
        """Whether `model` is written as the service names its models."""
        return True

    def spec(self, request: Request) -> ModelSpec:
        spec = self.specs.get(request.kind)
        if spec is None or not spec.model:
            raise ServiceError(FailureKind.INVALID,
                               f"the backend `{self.name}` has no model for {request.kind} "
                               f"steps: set `model` in `[backends.{self.name}.{request.kind}]`",
                               unbilled=True)
        return spec

    def made(self, kind: str, url: str, note: str) -> Done:
        """The Done of a step whose output is at `url`."""
        return Done({KINDS[kind].outputs[0].name: {"url": url}}, note=note)

    async def fetch(self, done: Done, request: Request) -> Mapping[str, Path | Sequence[Path]]:
        files: dict[str, Path | Sequence[Path]] = {}
        for name, place in done.outputs.items():
            url = str(place["url"])
            doing = f"download the {name} of `{request.step}`"
            body = await self.download(url, doing)
            source = f"{self.service} (a data URI)" if url.startswith("data:") else where(url)
            files[name] = await asyncio.to_thread(keep, body, request.workdir / name,
                                                  request.outputs[0].media, source, doing)
        return files

    async def download(self, url: str, doing: str) -> bytes:
        if url.startswith("data:"):
            body = from_data_uri(url)
            if body is None:
                raise ServiceError(FailureKind.FAILED, f"cannot {doing}: {self.service}'s "
                                                       f"data URI does not decode")
            return body
        r = await self.call("GET", url, doing)
        downloaded(r, doing, f"the result's URL has expired or is gone ({self.service} keeps "
                             f"results {self.kept})", refused=lambda r: self.redact(r.error(doing)))
        return r.body

    async def once(self, digest: str, upload: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """`upload()`, shared by the steps of this build that send the same image."""
        return await self.uploads.once(digest, upload)

    @abc.abstractmethod
    async def call(self, method: str, url: str, doing: str, **kwargs: Any) -> Response:
        """One request to the service, with its own auth (fal's `Key`, Replicate's bearer)."""

    def key(self) -> str:
        return self.setup.secret("api_key")

    def redact(self, e: ServiceError, doing: str | None = None) -> ServiceError:
        """`e` with the key masked out of its message (a server may echo it)."""
        try:
            key = self.key()
        except Exception:  # the key cannot be read: nothing of it can be in the message
            key = ""
        return redact(e, key, doing)

    async def close(self) -> None:
        self.uploads.cancel()
        await self.http.close()


# -- the result -----------------------------------------------------------------------------


def find_output(result: Any, spec: ModelSpec, defaults: Sequence[str], doing: str,
                where: str) -> str:
    """The URL (or data URI) of the step's output in a model's result: at `spec.output`
    when filmc.toml says where, else the first of `defaults` that is there, else the first
    URL anywhere in it."""
    paths = [spec.output] if spec.output else list(defaults)
    for path in paths:
        found = _url(_at(result, path))
        if found:
            return found
    if not spec.output:
        found = _first_url(result)
        if found:
            return found
    media = KINDS[spec.kind].outputs[0].media
    shown = f"at `{spec.output}`" if spec.output else "anywhere"
    keys = sorted(result) if isinstance(result, Mapping) else type(result).__name__
    raise ServiceError(FailureKind.FAILED,
                       f"cannot {doing}: {where} finished, and its result has no {media} URL "
                       f"{shown} (it has {keys}); say where it is with `output` in the "
                       f"`{spec.kind}` table of filmc.toml, e.g. `output = \"images.0.url\"`")


def _at(value: Any, path: str) -> Any:
    for part in path.split(".") if path else ():
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return None
    return value


def _url(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("url")
    if isinstance(value, str) and value.startswith(("http://", "https://", "data:")):
        return value
    return None


def _first_url(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list):
        for v in value:
            found = _url(v) or (_first_url(v) if isinstance(v, (list, Mapping)) else None)
            if found:
                return found
        return None
    return _url(value)


def keep(body: bytes, stem: Path, media: str, source: str, doing: str) -> Path:
    """Write a result under its real extension, once its first bytes say it is `media`
    (the engine then decodes it in full before it is stored)."""
    found = sniff(body)
    if found is None or found.media != media:
        what = f"a {found.media}" if found else "a file that is not an image or a video"
        raise ServiceError(FailureKind.FAILED,
                           f"cannot {doing}: {source} sent {what} ({len(body)} bytes) where "
                           f"the step makes {'an image' if media == 'image' else 'a video'}")
    path = stem.with_name(f"{stem.name}.{found.ext}")
    path.write_bytes(body)
    return path


def from_data_uri(url: str) -> bytes | None:
    """The bytes of a base64 data URI; None when it is not one."""
    head, sep, data = url.partition(",")
    if not (sep and head.startswith("data:") and head.endswith(";base64")):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


# -- images sent ----------------------------------------------------------------------------


def sendable(path: Path) -> tuple[bytes, Media]:
    """An input image as a model takes it: PNG, JPEG or WebP as it is, else as PNG."""
    return as_sent(path.read_bytes())


def data_uri(path: Path) -> str:
    """An image inline, as `data:image/png;base64,...`."""
    body, found = sendable(path)
    return data_url(body, found.mime)


# -- the services' answers ------------------------------------------------------------------


def json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def answer_text(r: Response) -> str:
    """An answer's body for a message, or its status when it has none."""
    return snippet(r.body) or f"status {r.status}"


def origin(url: str) -> tuple[str, str]:
    """Scheme and host: where a key may be sent."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.rsplit("@", 1)[-1]
