"""Tunables of the reliable consumer and the retry backoff."""

from __future__ import annotations

import random

import msgspec


class ConsumerSettings(msgspec.Struct, kw_only=True, frozen=True):
    lease_ms: int = 30_000  # an entry idle this long belongs to a dead consumer
    block_ms: int = 2_000  # XREADGROUP BLOCK
    batch: int = 64  # most entries read per XREADGROUP
    concurrency: int = 64  # handlers in flight at once
    max_attempts: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    grace_s: float = 10.0  # on shutdown, how long in-flight handlers may finish
    trim_interval_s: float = 30.0
    retain_s: float = 24 * 3600  # acked entries younger than this are kept for history
    history_ttl_s: int = 7 * 24 * 3600
    idle_consumer_s: float = 3600.0  # consumers with nothing pending idle this long are removed

    @property
    def lease_s(self) -> float:
        return self.lease_ms / 1000


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform in [0, base·2^(n-1)],
    capped, never below a tenth of the step so retries do not bunch at zero."""
    step = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return random.uniform(step / 10, step)
