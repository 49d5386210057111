"""Kling's API as data: its bearer tokens, its error codes, and its task records.

**Tokens.**  Kling takes no API key on the wire: each request carries a JWT
(HS256) signed with the account's secret key, whose claims are `iss` (the
access key), `exp` (now + 1800 s) and `nbf` (now − 5 s).  `Tokens` mints one
and reuses it until five minutes before it expires.  A token Kling calls
expired (401, code 1004) is dropped and the request may be sent again: it did
nothing.  A second one in a row means this machine's clock is off, and no new
token will help.

**Errors.**  Every answer is `{code, message, request_id, data}`; the HTTP
status alone misleads (429 is both "out of credit" and "too fast"), so
`classify` reads the code:

    401 1000–1003   the token is refused               AUTH (stops the backend)
    401 1004        the token has expired              TRANSIENT, sent again with a new one
    429 1100, 1103, 1304  account, permission, IP allowlist  AUTH
    429 1101, 1102  in arrears; resource packs used up CREDIT (stops the backend)
    400 1200, 1201  a parameter is wrong               INVALID
    404 1202, 1203  no such method or model            INVALID (NOT_FOUND when asking for a task)
    400 1300, 1301  platform policy, content security  POLICY (the shot fails, never retried)
    429 1302, 1303  too fast; too many tasks at once   RATE_LIMITED, sent again later
    5xx 5000–5002   Kling's own failure                TRANSIENT

A refusal made before any task exists is `unbilled` (the engine may send it
again); a 5000 or 5002 may hide a task that was made, so it is not, and the
engine asks Kling by our `external_task_id` before sending anything again.

**Tasks.**  `task_status` is `submitted`, `processing`, `succeed` or
`failed` (with `task_status_msg`); a finished task's files are in
`task_result.videos[].url` or `task_result.images[].url`, kept 30 days.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ..http import Response, kind_of_status, redact, retry_after, snippet, where
from ..protocol import Done, FailureKind, Pending, ServiceError

TOKEN_LIFETIME = 1800  # seconds, as Kling's documentation issues them
TOKEN_MARGIN = 300  # a token with less than this left is replaced before use
NOT_BEFORE_SLACK = 5  # `nbf` this many seconds back: a server clock a little behind ours
CONCURRENCY_WAIT = 5.0  # seconds to wait after 1303 when Kling gives no Retry-After

SECRETS_HELP = ("check that the variables named by `access_key_env` and `secret_key_env` hold "
                "this account's access key and secret key, for the region filmc calls "
                "(`region`)")

# code → (kind, unbilled, what the user should do)
CODES: dict[int, tuple[FailureKind, bool, str]] = {
    1000: (FailureKind.AUTH, True, f"Kling refused the token: {SECRETS_HELP}"),
    1001: (FailureKind.AUTH, True, "the request carried no token"),
    1002: (FailureKind.AUTH, True, f"Kling refused the token: {SECRETS_HELP}"),
    1003: (FailureKind.AUTH, True, "the token is not valid yet: this machine's clock is ahead "
                                   "of Kling's; set it right (NTP), then build again"),
    1004: (FailureKind.TRANSIENT, True, "the token had expired; filmc makes a new one"),
    1100: (FailureKind.AUTH, True, "Kling reports a problem with the account: check it in "
                                   "Kling's developer console"),
    1101: (FailureKind.CREDIT, True, "the account is in arrears: top it up, then build again"),
    1102: (FailureKind.CREDIT, True, "the account's resource packs are used up or have expired: "
                                     "buy more (or turn on pay-as-you-go), then build again"),
    1103: (FailureKind.AUTH, True, "this account may not use this API or model: check `model` "
                                   "(or `image_model`) and the account's permissions"),
    1200: (FailureKind.INVALID, True, ""),
    1201: (FailureKind.INVALID, True, ""),
    1202: (FailureKind.INVALID, True, "check `region` or `base_url`"),
    1203: (FailureKind.INVALID, True, "check `model` (or `image_model`)"),
    1300: (FailureKind.POLICY, True, "Kling's platform policy refused it: reword the shot, or "
                                     "give this step another backend"),
    1301: (FailureKind.POLICY, True, "Kling's content security refused the prompt or an input "
                                     "image: reword the shot or change its keyframe, or give "
                                     "this step another backend"),
    1302: (FailureKind.RATE_LIMITED, True, "requests sent too fast: filmc waits and sends it "
                                           "again (a lower `rate` avoids it)"),
    1303: (FailureKind.RATE_LIMITED, True, "more tasks at once than the account's resource pack "
                                           "allows: filmc waits and sends it again (set "
                                           "`concurrency` to the pack's limit to avoid it)"),
    1304: (FailureKind.AUTH, True, "Kling's IP allowlist refused this machine: ask Kling to "
                                   "allow its address"),
    5000: (FailureKind.TRANSIENT, False, "a server error at Kling"),
    5001: (FailureKind.TRANSIENT, True, "Kling is unavailable for now (maintenance)"),
    5002: (FailureKind.TRANSIENT, False, "a server timeout at Kling"),
}
EXPIRED_TOKEN = 1004
QUERY_NOT_FOUND = frozenset({1203})  # asked for a task: Kling does not know it
# What a failed task's message says when its content was refused (moderation, "risk").
_REFUSED = re.compile(r"moderat|content secur|risk|sensitive|polic|violat|审核|违规|风控|敏感",
                      re.IGNORECASE)
_MISSING = re.compile(r"not (?:be )?(?:exist|found)|no such|不存在", re.IGNORECASE)


class Tokens:
    """The bearer token of one account, minted when none is fresh.  `clock` is time.time
    (a test moves it to mint a token as if at another moment)."""

    def __init__(self, secret: Callable[[str], str],
                 clock: Callable[[], float] = time.time) -> None:
        self.secret = secret  # reads `access_key` / `secret_key` from their variables at use
        self.clock = clock
        self._token: str | None = None
        self._made = 0.0
        self._refused_at: float | None = None  # when Kling first called a token expired

    def get(self) -> str:
        now = self.clock()
        if self._token is None or now - self._made > TOKEN_LIFETIME - TOKEN_MARGIN:
            self._token, self._made = mint(self.secret("access_key"), self.secret("secret_key"),
                                           now), now
        return self._token

    def expired(self, token: str, sent_at: float) -> bool:
        """Kling called `token` (sent at `sent_at`, time.monotonic()) expired: forget it.
        True when the request was sent after an earlier refusal, so with a token made
        since: this machine's clock is off, and no new token will help.  (Requests in
        flight together share a token: one refusal each is no news.)"""
        if self._token == token:
            self._token = None
        if self._refused_at is None:
            self._refused_at = time.monotonic()
            return False
        return sent_at > self._refused_at

    def taken(self) -> None:
        """Kling took a token: the clock is fine."""
        self._refused_at = None

    def keys(self) -> tuple[str, ...]:
        """What a message must never show: both keys, and the token."""
        return tuple(k for k in (self.secret("access_key"), self.secret("secret_key"),
                                 self._token or "") if len(k) >= 4)


def mint(access_key: str, secret_key: str, now: float) -> str:
    """A token as Kling's documentation makes it: HS256, `iss`, `exp`, `nbf`."""
    import jwt
    from jwt.warnings import InsecureKeyLengthWarning

    claims = {"iss": access_key, "exp": int(now) + TOKEN_LIFETIME,
              "nbf": int(now) - NOT_BEFORE_SLACK}
    with warnings.catch_warnings():  # the key's length is Kling's choice, not the user's
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret_key, algorithm="HS256", headers={"typ": "JWT"})


def error_body(body: bytes) -> Mapping[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def classify(r: Response, doing: str, tokens: Tokens | None = None, token: str = "",
             sent_at: float = 0.0, query: bool = False) -> ServiceError:
    """The ServiceError a refused request means, for a message `cannot {doing}: ...`.
    `token`, `sent_at`: the token the request carried and when it went; `query`: the
    request asked for a task, so "no such resource" means no such task."""
    err = error_body(r.body)
    code = err.get("code") if isinstance(err.get("code"), int) else None
    said = str(err.get("message") or "").strip() or snippet(r.body) or "no reason given"
    request_id = f" (Kling's request id {err['request_id']})" if err.get("request_id") else ""
    kind, unbilled, advice = CODES.get(code, (None, False, "")) if code is not None else \
        (None, False, "")
    if kind is None:
        kind = kind_of_status(r.status)
        unbilled = r.status == 429 or 400 <= r.status < 500
    wait = retry_after(r.headers)
    if query and (r.status == 404 and code in (None, *QUERY_NOT_FOUND)
                  or code in (1200, 1201) and _MISSING.search(said)):
        kind, advice = FailureKind.NOT_FOUND, "Kling does not know this task"
    elif code == EXPIRED_TOKEN and tokens is not None:
        if tokens.expired(token, sent_at):  # a token made since is "expired" too: the clock
            kind, unbilled = FailureKind.AUTH, True
            advice = ("Kling calls a token made just now expired: this machine's clock is "
                      "behind Kling's; set it right (NTP), then build again")
    elif code == 1303 and wait is None:
        wait = CONCURRENCY_WAIT
    shown = f"{r.status} (code {code})" if code is not None else str(r.status)
    message = (f"cannot {doing}: Kling answered {shown}: {said}"
               + (f"; {advice}" if advice else "") + request_id)
    e = ServiceError(kind, message, retry_after=wait, unbilled=unbilled, status=r.status)
    return redact(e, tokens.keys() if tokens is not None else (), shapes=())


# -- task records ------------------------------------------------------------------------


def accepted(r: Response, doing: str) -> str:
    """The task id of a submit Kling accepted (HTTP 200, code 0)."""
    answer = r.json()
    data = answer.get("data") if isinstance(answer, dict) else None
    task = data.get("task_id") if isinstance(data, dict) else None
    if not task:
        raise ServiceError(FailureKind.TRANSIENT, f"cannot {doing}: {where(r.url)} answered "
                           f"{r.status} without a task id ({snippet(r.body)})",
                           status=r.status)
    return str(task)


def task_of(r: Response, external: str | None) -> Mapping[str, Any] | None:
    """The task record in a query's answer: `data` itself, or (asked by `external_task_id`
    where Kling answers a page of tasks) the one whose `task_info.external_task_id` is
    ours; None when there is none."""
    answer = r.json()
    data = answer.get("data") if isinstance(answer, dict) else None
    if isinstance(data, list):
        return next((t for t in data if isinstance(t, dict) and external is not None
                     and _external(t) == external), None)
    if not isinstance(data, dict) or not data.get("task_id"):
        return None
    if external is not None and _external(data) not in (None, external):
        return None
    return data


def _external(task: Mapping[str, Any]) -> str | None:
    info = task.get("task_info")
    value = info.get("external_task_id") if isinstance(info, dict) else None
    return str(value) if value else None


def outcome(task: Mapping[str, Any], output: str, where_: str) -> Pending | Done:
    """What a task record says: still going, finished (its file's URL), or a failure."""
    status = str(task.get("task_status") or "")
    tid = str(task.get("task_id") or "")
    if status in ("submitted", "processing"):
        return Pending(status)
    if status == "failed":
        said = str(task.get("task_status_msg") or "no reason given")
        if _REFUSED.search(said):
            raise ServiceError(FailureKind.POLICY,
                               f"Kling refused task {tid}: {said}; reword the shot or change "
                               f"its keyframe, or give this step another backend")
        raise ServiceError(FailureKind.FAILED, f"Kling's task {tid} failed: {said}")
    if status != "succeed":
        raise ServiceError(FailureKind.TRANSIENT, f"{where_} says task {tid} is `{status}`, "
                           f"which Kling does not document")
    result = task.get("task_result")
    files = result.get("videos" if output == "video" else "images") \
        if isinstance(result, dict) else None
    first = files[0] if isinstance(files, list) and files else None
    url = first.get("url") if isinstance(first, dict) else None
    if not url or not isinstance(first, dict):
        raise ServiceError(FailureKind.FAILED, f"Kling's task {tid} succeeded without a "
                           f"{'video' if output == 'video' else 'image'} URL")
    place: dict[str, Any] = {"url": str(url), "task": tid}
    if output == "video" and first.get("duration") is not None:
        place["duration"] = str(first["duration"])
    units = task.get("final_unit_deduction")
    note = f"Kling task {tid}" + (f", {units} units" if units not in (None, "") else "")
    return Done({output: place}, cost=None, note=note)
