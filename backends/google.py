"""The Gemini API, for both Google adapters (gemini_image.py and veo.py): the key header,
the key sent to the API's own host only, images inline, the settings both have, and
what an error answer (a google.rpc.Status) means for the build.

    api = GeminiAPI(setup, http)
    r = await api.call("POST", f"models/{model}:generateContent", doing, json=body)
    r = await api.download(uri, doing)          # follows a redirect to storage, keyless

Every failure is a `ServiceError` with the key, and anything shaped like a Google
API key, masked out of its message (`redact`).  `classify` reads a 429 or
RESOURCE_EXHAUSTED as a per-minute limit (wait, send again) unless its details
say a daily quota or the project's credit is used up (stop the backend); an
error message that gives "support codes" or speaks of the usage policies is a
content refusal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from .http import Http, Response, kind_of_status, retry_after, where
from .http import redact as _redact
from .inputs import as_sent
from .protocol import FailureKind, Input, ServiceError, Setup
from .settings import Problems

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
_KEY_SHAPES = ((re.compile(r"AIza[0-9A-Za-z_\-]{8,}"), "AIza***"),)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# What a Gemini API error message says when the content was refused ("Support codes: …").
POLICY_WORDS = re.compile(r"support codes?:|usage guidelines|prohibited use|responsible ai|"
                          r"safety (filter|polic)|violat\w* (our|the|google)", re.IGNORECASE)
_OUT_OF_CREDIT = re.compile(r"credits? (are|is) depleted|spending cap|prepay|billing (is )?not "
                            r"(enabled|active)|enable billing", re.IGNORECASE)


class GeminiAPI:
    """Requests to the Gemini API for one backend: the key goes in `x-goog-api-key`, to
    `base_url`'s host only, and no failure's message carries it."""

    def __init__(self, setup: Setup, http: Http) -> None:
        self.setup = setup
        self.http = http
        self.base_url = str(setup.settings.get("base_url") or DEFAULT_BASE_URL).rstrip("/")

    def key(self) -> str:
        return self.setup.secret("api_key")

    def url(self, route: str, base: str | None = None) -> str:
        return route if "://" in route else f"{(base or self.base_url).rstrip('/')}/{route}"

    def own(self, url: str, base: str | None = None) -> bool:
        """Whether `url` is on the API's own host (the only one the key goes to): `base_url`'s,
        or `base`, where an earlier build's job was (and still is) followed."""
        return urlsplit(url)[:2] in {urlsplit(b)[:2] for b in (self.base_url, base) if b}

    async def call(self, method: str, route: str, doing: str, *, json: Any = None,
                   base: str | None = None) -> Response:
        """One request; a failure is classified, and never carries the key."""
        key = self.key()
        r = await self.http.send(method, self.url(route, base), doing, key, _KEY_SHAPES,
                                 json=json, headers={"x-goog-api-key": key})
        if not r.ok:
            raise redact(classify(r, doing), key)
        return r

    async def download(self, url: str, doing: str, base: str | None = None) -> Response:
        """GET a file the API made.  The key goes along only to the API's own host (see
        `own`), and a redirect elsewhere (a storage host) is followed without it."""
        key = self.key()
        try:
            if not self.own(url, base):
                return await self.http.request("GET", url)
            r = await self._first_hop(url, {"x-goog-api-key": key})
            location = r.headers.get("Location") or r.headers.get("location")
            if r.status in _REDIRECTS and location:
                there = urljoin(url, location)
                mine = self.own(there, base)
                r = await self.http.request(
                    "GET", there, headers={"x-goog-api-key": key} if mine else None)
            return r
        except ServiceError as e:
            raise redact(e, key, doing) from None

    async def _first_hop(self, url: str, headers: Mapping[str, str]) -> Response:
        """GET without following a redirect (aiohttp would carry every header but
        `Authorization` to another host), failures said as backends/http.py says them."""
        import aiohttp

        try:
            async with self.http.session().get(url, headers=headers,
                                               allow_redirects=False) as r:
                return Response(r.status, dict(r.headers), await r.read(), str(r.url))
        except aiohttp.ClientConnectorError:
            raise ServiceError(FailureKind.TRANSIENT, f"cannot reach {self.http.backend} at "
                                                      f"{where(url)}", unbilled=True) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise ServiceError(FailureKind.TRANSIENT, f"the connection to {where(url)} broke "
                                                      f"({type(e).__name__})") from None


def sendable(ref: Input) -> tuple[bytes, str]:
    """An input image as the API takes it inline, with its MIME type: PNG, JPEG or WebP as
    it is, anything else converted to PNG."""
    try:
        body = ref.path.read_bytes()
    except OSError as e:
        raise ServiceError(FailureKind.INVALID, f"cannot read the input `{ref.path}` (from "
                                                f"`{ref.step}`): {e.strerror}") from None
    try:
        sent, media = as_sent(body, rgb=True)
    except Exception:
        raise ServiceError(FailureKind.INVALID, f"the input `{ref.path}` (from `{ref.step}`) "
                                                f"is not an image") from None
    return sent, media.mime


def check_common(settings: Mapping[str, Any], type_name: str, example: str) -> Problems:
    """The settings every Gemini API backend has: `model` (required) and `base_url`."""
    problem = Problems()
    model = settings.get("model")
    if model is None:
        problem("model", f"the `{type_name}` backend needs `model`: the model to ask",
                f"for example `model = \"{example}\"`; Google renames its models every few "
                f"months, so filmc has no default")
    elif not isinstance(model, str) or not model.strip() or "/" in model or ":" in model:
        problem("model", f"`model` must be a model id such as `{example}`, not `{model}`")
    base = settings.get("base_url")
    if base is not None and not (isinstance(base, str) and re.match(r"https?://[^/]", base)):
        problem("base_url", f"`base_url` must be an http(s) URL, not `{base}`",
                f"for the Gemini API leave it out (it is `{DEFAULT_BASE_URL}`)")
    return problem


# -- what an error answer means -------------------------------------------------------------


def error_body(body: bytes) -> Mapping[str, Any]:
    """The `error` object (a google.rpc.Status) of a Gemini API answer; empty when the body
    is something else."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # some Google front ends wrap the answer in a list
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def details(err: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    """The details of one `@type` (`ErrorInfo`, `QuotaFailure`, `RetryInfo`…) in an error."""
    found = err.get("details")
    return [d for d in (found if isinstance(found, list) else [])
            if isinstance(d, dict) and str(d.get("@type", "")).endswith(f".{kind}")]


def retry_delay(err: Mapping[str, Any]) -> float | None:
    """`RetryInfo.retryDelay` ("26s", "1.5s") in seconds."""
    for info in details(err, "RetryInfo"):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(info.get("retryDelay", "")).strip())
        if m:
            return float(m[1])
    return None


def out_of_quota(err: Mapping[str, Any]) -> str | None:
    """What to do when a RESOURCE_EXHAUSTED answer means waiting will not help this build:
    a per-day quota is used up, or the project's prepaid credit or spending cap is; None
    for a per-minute limit (wait, send again)."""
    quotas = [str(v.get("quotaId", "")) for q in details(err, "QuotaFailure")
              for v in (q.get("violations") or []) if isinstance(v, dict)]
    daily = [q for q in quotas if "PerDay" in q]
    if daily:
        return (f"the daily quota `{daily[0]}` is used up: it resets at midnight Pacific time, "
                f"or raise it in Google AI Studio, then build again")
    if not quotas and _OUT_OF_CREDIT.search(str(err.get("message") or "")):
        return ("the project's credit or spending cap is used up: add credit or raise the cap "
                "in Google AI Studio, then build again")
    return None


def classify(r: Response, doing: str) -> ServiceError:
    """The ServiceError a Gemini API error answer means, for a message `cannot {doing}: …`."""
    err = error_body(r.body)
    message = short(str(err.get("message") or "")) or short(
        r.body.decode("utf-8", errors="replace")) or "no reason given"
    status, word = r.status, str(err.get("status") or "")
    reason = message + (f" ({word})" if word else "")
    reasons = {str(d.get("reason")) for d in details(err, "ErrorInfo")}
    unbilled, wait = False, None
    if status == 429 or word == "RESOURCE_EXHAUSTED":
        todo = out_of_quota(err)
        if todo is not None:
            kind = FailureKind.CREDIT
            reason += f"; {todo}"
        else:
            kind, unbilled = FailureKind.RATE_LIMITED, True
            wait = retry_delay(err)
    elif "API_KEY_INVALID" in reasons or status == 401 or word == "UNAUTHENTICATED":
        kind = FailureKind.AUTH
        reason = ("the API key was refused: check that the environment variable named by "
                  f"`api_key_env` holds a current Gemini API key ({reason})")
    elif status == 403 or word == "PERMISSION_DENIED":
        kind = FailureKind.AUTH
        reason += ("; the key's project may not have the Gemini API enabled, or may not be "
                   "allowed this model")
    elif POLICY_WORDS.search(message):
        kind = FailureKind.POLICY
        reason += "; reword the shot's prompt, or make this step with another backend"
    elif status == 404:
        kind = FailureKind.INVALID
        reason += "; check `model`" if err else "; no Gemini API answers there: check `base_url`"
    elif word == "FAILED_PRECONDITION" and _OUT_OF_CREDIT.search(message):
        kind = FailureKind.CREDIT
    elif status == 504 or word == "DEADLINE_EXCEEDED":
        kind = FailureKind.TRANSIENT  # it may have been made, and billed, behind the deadline
    elif status >= 500:
        kind, unbilled = FailureKind.TRANSIENT, True  # an error answer: nothing was made
    else:
        kind = kind_of_status(status)
    return ServiceError(kind, f"cannot {doing}: {where(r.url)} answered {status}: {reason}",
                        retry_after=wait if wait is not None else retry_after(r.headers),
                        unbilled=unbilled, status=status)


def redact(e: ServiceError, key: str, doing: str | None = None) -> ServiceError:
    """`e` with the key, and anything shaped like a Google API key, masked out of its message;
    and, given `doing`, said as `cannot {doing}: …` when it does not say so yet."""
    return _redact(e, key, doing, _KEY_SHAPES)


def short(text: str, limit: int = 300) -> str:
    """`text` on one line, cut at `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
