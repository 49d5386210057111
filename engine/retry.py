"""How long to wait before asking a service again, and how often to ask at all.

The rules are BACKENDS.md's: exponential backoff with full jitter (a random
wait between 0 and min(cap, base × 2^attempt), so that 32 jobs throttled at
once do not come back at once), a service's `Retry-After` honoured as a floor,
a bounded number of tries and an overall deadline per job.

    policy = Policy.of(settings)      # retries, backoff_s, backoff_cap_s, timeout_s...
    await asyncio.sleep(policy.delay(attempt, retry_after))
    limiter = RateLimiter(rate=5)     # at most 5 requests a second to this backend
    await limiter.wait()
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from typing import Any

import attrs

# How long one job may take before filmc stops waiting for it, by step kind (seconds):
# a clip can queue for a long while at a busy service.
DEFAULT_TIMEOUT = {"sheet": 900.0, "plate": 900.0, "keyframe": 900.0, "clip": 3600.0,
                   "speech": 600.0}


@attrs.frozen
class Policy:
    retries: int = 6  # tries of one request after the first, when the failure is retryable
    base: float = 1.0  # seconds
    cap: float = 30.0
    poll: float = 2.0  # seconds between polls when the service gives no hint
    timeout: float | None = None  # the whole job; None: DEFAULT_TIMEOUT for its kind

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> Policy:
        """From a backend's settings: `retries`, `backoff_s`, `backoff_cap_s`,
        `poll_interval_s`, `timeout_s` (none of which enters a content key)."""
        def number(name: str, default: float) -> float:
            v = settings.get(name, default)
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
                and v >= 0 else default

        timeout = settings.get("timeout_s")
        return cls(int(number("retries", 6)), number("backoff_s", 1.0),
                   number("backoff_cap_s", 30.0), number("poll_interval_s", 2.0),
                   float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before try number `attempt` (1 = the first retry): full jitter, and
        never less than what the service asked for."""
        wait = random.uniform(0, min(self.cap, self.base * 2 ** max(0, attempt - 1)))
        return max(wait, retry_after or 0.0)

    def deadline_for(self, kind: str) -> float:
        return self.timeout if self.timeout is not None else DEFAULT_TIMEOUT.get(kind, 900.0)


class RateLimiter:
    """At most `rate` requests a second, evenly spaced; `rate` None or 0: no limit."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
