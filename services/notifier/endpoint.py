"""Per-endpoint (scheme://host:port) state of the dispatcher."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from services.notifier.store import Claimed

DEFER_S = 0.5  # a delivery for a saturated endpoint comes back after at least this long


@dataclass(slots=True)
class Endpoint:
    active: int = 0
    backlog: deque[Claimed] = field(default_factory=deque)
    latency: float = 0.0  # moving average of its attempts' seconds
    deferred: int = 0  # sent back to the schedule in the current claim round

    def defer_delay(self, per_endpoint: int) -> float:
        """Spread deferred deliveries over the time the endpoint needs for what is ahead of them,
        so a big backlog for a slow receiver is not claimed and put back over and over."""
        self.deferred += 1
        ahead = self.active + len(self.backlog) + self.deferred
        return max(DEFER_S, self.latency * ahead / per_endpoint)
