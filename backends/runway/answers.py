"""What Runway's answers mean for the build: retry, stop the backend, or fail the step.

Runway's HTTP errors page says what may be sent again: 502 and 503 (shedding
load) and 504 (overloaded) started nothing; 400 and 401 are never retried.  A
429 on a submit is the organization's daily generation limit, not a rate to
wait out: it stops the backend as an empty account does.  A task that ran and
failed says why in `failureCode`: `SAFETY.INPUT.*` and `SAFETY.OUTPUT.*` are
moderation (never retried), `ASSET.INVALID` an input Runway cannot use,
`INTERNAL.*` its own failure (build again).  Messages never carry the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..http import Response, kind_of_status, masked, retry_after, snippet, where
from ..protocol import FailureKind, ServiceError


def reason(r: Response) -> str:
    """Runway's `{"error": "...", "issues": [{"path": [...], "message": ...}]}`, as one line."""
    try:
        data = json.loads(r.body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return snippet(r.body) or "no reason given"
    said = str(data.get("error") or data.get("message") or "no reason given")
    issues = data.get("issues")
    if isinstance(issues, list):
        parts = []
        for issue in issues[:5]:
            if isinstance(issue, dict):
                path = ".".join(str(p) for p in issue.get("path") or ())
                parts.append(f"`{path}`: {issue.get('message')}" if path
                             else str(issue.get("message")))
        if parts:
            said += " (" + "; ".join(parts) + ")"
    return said


def classify(r: Response, doing: str, key: str, submitting: bool) -> ServiceError:
    """The ServiceError a non-2xx answer means (Runway's HTTP errors page), key masked."""
    said = reason(r)
    status, unbilled, kind = r.status, False, kind_of_status(r.status)
    if status == 401:
        kind = FailureKind.AUTH
        said = (f"the API key was refused: check that the environment variable named by "
                f"`api_key_env` holds a current Runway key ({said})")
    elif status == 403:
        kind = FailureKind.AUTH
    elif status == 429 and submitting:
        kind = FailureKind.CREDIT
        said = (f"the organization's daily generation limit is used up ({said}); it resets "
                f"daily, over a rolling 24 hours: nothing more is sent to Runway in this build; "
                f"build again later, or ask Runway for a higher usage tier")
    elif status == 429:
        kind, unbilled = FailureKind.RATE_LIMITED, True
    elif status == 402 or "enough credits" in said.lower():
        kind = FailureKind.CREDIT
        said += "; add credits in Runway's developer portal, then build again"
    elif status == 404:
        kind = FailureKind.INVALID
        said += "; check `model` and `base_url`"
    elif status in (502, 503, 504):  # Runway sheds load: nothing was started
        kind, unbilled = FailureKind.TRANSIENT, True
    return ServiceError(kind, masked(f"cannot {doing}: {where(r.url)} answered {status}: {said}",
                                     key),
                        retry_after=retry_after(r.headers), unbilled=unbilled, status=status)


def task_failure(task_id: str, task: Mapping[str, Any]) -> ServiceError:
    """A FAILED task, by its `failureCode` (Runway's task failures page)."""
    code = str(task.get("failureCode") or "")
    said = f"{code}: {task.get('failure') or 'no reason given'}" if code else \
        str(task.get("failure") or "no reason given")
    head = f"Runway task {task_id} failed ({said})"
    if code.startswith("SAFETY.INPUT"):
        return ServiceError(FailureKind.POLICY, f"{head}: Runway's moderation refused an input; "
                            f"it is not sent again as it is: reword the shot's prompt or change "
                            f"its image, or give this step another backend")
    if code.startswith("SAFETY"):
        return ServiceError(FailureKind.POLICY, f"{head}: Runway's moderation refused what it "
                            f"made; reword the shot's prompt, or give this step another backend")
    if code.startswith("ASSET"):
        return ServiceError(FailureKind.INVALID, f"{head}: Runway cannot use an input image; "
                            f"check the image the step was given (its format and its shape)")
    if code.startswith("INTERNAL.BAD_OUTPUT"):
        return ServiceError(FailureKind.FAILED, f"{head}: Runway rejected its own result; "
                            f"`filmc build` tries again (text or graphics drawn over an input "
                            f"image can cause this)")
    return ServiceError(FailureKind.FAILED, f"{head}; `filmc build` tries again")


def about_inputs(r: Response) -> bool:
    """Whether a 400 is about an input image (a remembered upload may have expired)."""
    text = reason(r).lower()
    return any(w in text for w in ("promptimage", "referenceimages", "runway://", "asset",
                                   "uri"))
