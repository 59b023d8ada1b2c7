"""When the next attempt of a delivery is due: the retry schedule, jitter and Retry-After."""

from __future__ import annotations

import random
from datetime import UTC
from email.utils import parsedate_to_datetime


class RetrySchedule:
    """`delays[n]` seconds before attempt n (n = 0 is the first, normally immediate). Each delay
    varies by ± `jitter` so retries of many deliveries do not arrive at a receiver together."""

    def __init__(self, delays: tuple[float, ...], jitter: float = 0.1) -> None:
        self.delays, self.jitter = delays, jitter
        # A receiver's Retry-After may push an attempt out, but not beyond the longest step.
        self.max_retry_after = max(max(delays), 60.0)

    @property
    def attempts(self) -> int:
        return len(self.delays)

    def first_delay(self) -> float:
        return self._jittered(self.delays[0])

    def next_delay(self, attempts_made: int, retry_after: float | None = None) -> float | None:
        """Seconds until the next attempt after `attempts_made` failed ones; None when the
        schedule is used up."""
        if attempts_made >= len(self.delays):
            return None
        delay = self._jittered(self.delays[attempts_made])
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def _jittered(self, delay: float) -> float:
        if not delay or not self.jitter:
            return delay
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` as delta-seconds or an HTTP date → seconds from `now`; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
