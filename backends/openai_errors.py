"""What an OpenAI error answer means for the build: retry, stop the backend, or fail the step.

OpenAI answers a failure with `{"error": {"message", "type", "param", "code"}}`,
and the status alone misleads: a 429 is either a rate limit (wait, send again:
nothing was made) or an empty account (`insufficient_quota` and its kin: stop
submitting, waiting will not help); a 400 is either a malformed request or a
safety refusal (`moderation_blocked`, `content_policy_violation`), which the
user fixes by rewording the shot.  So `classify` reads the code first.

A 5xx means nothing was made and nothing billed, so it is `unbilled` and the
engine may send the request again; a gateway timeout (504, Cloudflare's 524)
is the exception: the generation may have finished, and been billed, behind it.

Messages carry the service's reason, never a header; the adapter masks the key,
and anything shaped like an OpenAI key, in case a server echoes one
(`http.redact`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .http import Response, kind_of_status, retry_after, snippet, where
from .protocol import FailureKind, ServiceError

# Error codes (or types) that mean the account cannot pay: retrying does not help.
BILLING = frozenset({
    "insufficient_quota", "billing_hard_limit_reached", "billing_not_active",
    "credit_balance_exhausted", "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded", "organization_usage_limit_exceeded"})
# Refusals by the safety system (OpenAI's image models, dall-e, Azure OpenAI's filter).
POLICY = frozenset({"moderation_blocked", "content_policy_violation", "content_filter"})
# Statuses of a gateway that stopped waiting: the service may have finished behind it.
GATEWAY_TIMEOUTS = frozenset({504, 524})


def classify(r: Response, doing: str) -> ServiceError:
    """The ServiceError a non-2xx answer means, for a message `cannot {doing}: ...`."""
    err = error_body(r.body)
    code, etype = str(err.get("code") or ""), str(err.get("type") or "")
    reason = _reason(err, r.body)
    status = r.status
    unbilled = False
    wait = None
    if code in BILLING or etype in BILLING:
        kind = FailureKind.CREDIT
        reason += "; add credit or raise the spend limit at the service, then build again"
    elif status == 401:
        kind = FailureKind.AUTH
        reason = ("the API key was refused: check that the environment variable named by "
                  f"`api_key_env` holds a current key ({reason})")
    elif status == 403:
        kind = FailureKind.AUTH
        reason += ("; the key's project may not be allowed this model, or the organization "
                   "may need verifying")
    elif status == 429:
        kind, unbilled, wait = FailureKind.RATE_LIMITED, True, rate_limit_wait(r.headers)
    elif code in POLICY or etype in POLICY or "safety system" in reason.lower():
        kind = FailureKind.POLICY
        reason += "; reword the shot's prompt, or make this step with another backend"
    elif status == 404:
        kind = FailureKind.INVALID
        reason += ("; check `model`" if err else "; no OpenAI API answers there: check `base_url`")
    elif status in GATEWAY_TIMEOUTS:
        kind = FailureKind.TRANSIENT  # may have been made and billed behind the gateway
    elif status >= 500:
        kind, unbilled = FailureKind.TRANSIENT, True
    else:
        kind = kind_of_status(status)
    return ServiceError(kind, f"cannot {doing}: {where(r.url)} answered {status}: {reason}",
                        retry_after=wait if wait is not None else retry_after(r.headers),
                        unbilled=unbilled, status=status)


def error_body(body: bytes) -> Mapping[str, Any]:
    """The `error` object of an OpenAI-shaped answer; empty when the body is something else."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, str):  # some compatible servers answer {"error": "..."}
        return {"message": err}
    return err if isinstance(err, dict) else {}


def _reason(err: Mapping[str, Any], body: bytes) -> str:
    if not err:
        return snippet(body) or "no reason given"
    message = str(err.get("message") or "no reason given").strip()
    extra = [f"`{err['param']}`" if err.get("param") else "", str(err.get("code") or "")]
    extra = [e for e in extra if e]
    return message + (f" ({', '.join(extra)})" if extra else "")


def rate_limit_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until a throttled request may be sent again: `retry-after-ms`, `Retry-After`,
    else the reset time of whichever `x-ratelimit-remaining-*` has run out."""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        if h.get("retry-after-ms"):
            return max(0.0, float(h["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    seconds = retry_after(h)
    if seconds is not None:
        return seconds
    resets = [duration(h[f"x-ratelimit-reset-{what}"]) for what in ("requests", "tokens")
              if f"x-ratelimit-reset-{what}" in h
              and h.get(f"x-ratelimit-remaining-{what}", "0") == "0"]
    found = [s for s in resets if s is not None]
    return max(found) if found else None


def duration(text: str) -> float | None:
    """A duration as OpenAI's rate-limit headers write it (`20ms`, `1s`, `6m0s`), in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)
