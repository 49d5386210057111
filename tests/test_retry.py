"""The rules for asking a service again: backoff with full jitter under `Retry-After`, a
request rate, and the HTTP statuses' meaning (BACKENDS.md's rules, unit by unit)."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from filmc.backends.http import kind_of_status, retry_after
from filmc.backends.protocol import FailureKind
from filmc.engine.retry import DEFAULT_TIMEOUT, Policy, RateLimiter


def test_backoff_is_full_jitter_under_a_cap_and_honours_retry_after() -> None:
    p = Policy(base=1.0, cap=30.0)
    for attempt in range(1, 12):
        waits = [p.delay(attempt) for _ in range(200)]
        bound = min(30.0, 2 ** (attempt - 1))
        assert all(0 <= w <= bound for w in waits)
        assert max(waits) > bound / 2  # spread over the whole range, not a fixed step
    assert all(p.delay(1, retry_after=7.5) >= 7.5 for _ in range(50))  # the service's floor


def test_policy_from_settings() -> None:
    p = Policy.of({"retries": 2, "backoff_s": 0.5, "backoff_cap_s": 4, "poll_interval_s": 1,
                   "timeout_s": 60})
    assert (p.retries, p.base, p.cap, p.poll, p.deadline_for("clip")) == (2, 0.5, 4.0, 1.0, 60.0)
    default = Policy.of({"backoff_s": -1, "retries": "many"})  # nonsense falls back
    assert default.base == 1.0 and default.retries == 6
    assert default.deadline_for("clip") == DEFAULT_TIMEOUT["clip"] > DEFAULT_TIMEOUT["keyframe"]


def test_rate_limiter_spaces_requests() -> None:
    async def ten() -> float:
        limiter = RateLimiter(rate=50)  # one every 20 ms
        t = time.monotonic()
        await asyncio.gather(*(limiter.wait() for _ in range(10)))
        return time.monotonic() - t

    assert 0.17 <= asyncio.run(ten()) < 1.0  # nine intervals after the first
    assert asyncio.run(_unlimited()) < 0.05


async def _unlimited() -> float:
    limiter = RateLimiter(None)
    t = time.monotonic()
    await asyncio.gather(*(limiter.wait() for _ in range(100)))
    return time.monotonic() - t


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"retry-after": "0.5"}) == 0.5
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 20, usegmt=True)
    assert retry_after({"Retry-After": date}, now=now) == pytest.approx(20, abs=1)
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None


@pytest.mark.parametrize("status, kind", [
    (400, FailureKind.INVALID), (401, FailureKind.AUTH), (402, FailureKind.CREDIT),
    (403, FailureKind.AUTH), (404, FailureKind.NOT_FOUND), (408, FailureKind.TRANSIENT),
    (410, FailureKind.EXPIRED), (422, FailureKind.INVALID), (429, FailureKind.RATE_LIMITED),
    (500, FailureKind.TRANSIENT), (503, FailureKind.TRANSIENT), (418, FailureKind.INVALID),
])
def test_what_a_status_means(status: int, kind: FailureKind) -> None:
    assert kind_of_status(status) is kind
