"""Token buckets, keyed by anything hashable: login attempts per IP and per username, ingest
requests per IP and events per site.

A bucket holds up to ``burst`` tokens and regains ``rate`` tokens per second. Taking from an
empty bucket is refused with the seconds until enough tokens are back, which the web room
sends as ``Retry-After``. The state is a plain dict of two-item lists: one lookup and a few
float operations per check, cheap enough for the ingest hot path, and no lock, because every
caller runs on the server's one event loop thread (a lost update under a race would only
make a limit a token more lenient). Full buckets are forgotten now and then, so a scan of
many addresses or usernames cannot grow memory without bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable

_FORGET_AFTER_KEYS = 100_000


class TokenBucket:
    def __init__(self, rate_per_second: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = float(rate_per_second)
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[Hashable, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: Hashable, now: float) -> list[float]:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _FORGET_AFTER_KEYS:
                self._forget_full(now)
            bucket = self._buckets[key] = [self.burst, now]
        else:
            tokens = bucket[0] + (now - bucket[1]) * self.rate
            bucket[0] = tokens if tokens < self.burst else self.burst
            bucket[1] = now
        return bucket

    def take(self, key: Hashable, tokens: float = 1.0) -> float:
        """Take ``tokens``; 0.0 when allowed, else the seconds to wait (nothing is taken)."""
        bucket = self._level(key, self._clock())
        if bucket[0] >= tokens:
            bucket[0] -= tokens
            return 0.0
        return (min(tokens, self.burst) - bucket[0]) / self.rate

    def check(self, key: Hashable, tokens: float = 1.0) -> float:
        """Like :meth:`take` but takes nothing: the seconds to wait, or 0.0."""
        bucket = self._level(key, self._clock())
        return 0.0 if bucket[0] >= tokens else (min(tokens, self.burst) - bucket[0]) / self.rate

    def reset(self, key: Hashable) -> None:
        self._buckets.pop(key, None)

    def _forget_full(self, now: float) -> None:
        refill = self.burst / self.rate
        self._buckets = {
            key: bucket for key, bucket in self._buckets.items() if now - bucket[1] < refill
        }


def retry_after(seconds: float) -> int:
    """Whole seconds for a ``Retry-After`` header: never 0 for a refusal."""
    return max(1, math.ceil(seconds))


class LoginThrottle:
    """Throttles password attempts per client IP (every attempt) and per username (failures).

    Call :meth:`check` before verifying a password (it refuses, and takes an IP token, before
    any argon2 work is done), then :meth:`failed` after a wrong password or :meth:`succeeded`
    after the right one.
    """

    def __init__(
        self,
        burst_per_ip: int,
        rate_per_ip_per_minute: int,
        burst_per_username: int,
        rate_per_username_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_ip = TokenBucket(rate_per_ip_per_minute / 60, burst_per_ip, clock)
        self.per_username = TokenBucket(rate_per_username_per_minute / 60, burst_per_username, clock)

    def check(self, ip: str, username: str) -> float:
        """0.0 if the attempt may go ahead, else the seconds until it may."""
        wait = self.per_username.check((username or "").lower())
        if wait:
            return wait
        return self.per_ip.take(ip)

    def failed(self, username: str) -> None:
        self.per_username.take((username or "").lower())

    def succeeded(self, username: str) -> None:
        self.per_username.reset((username or "").lower())


class IngestLimits:
    """The optional ingest limits: requests per client IP, events per site. Either may be off."""

    def __init__(self, per_ip: int, per_site: int, burst_seconds: int) -> None:
        burst_seconds = max(1, burst_seconds)
        self.per_ip = TokenBucket(per_ip, per_ip * burst_seconds) if per_ip > 0 else None
        self.per_site = TokenBucket(per_site, per_site * burst_seconds) if per_site > 0 else None
