"""How a gang's time is spent, for operators and `bench/generator.py`, on rank 0's clock.

Busy: rank 0's generate(), from text encoding to decoded frames. Hand-over: from one job's decoded
frames to the start of the next job on the same gang, counted only when that next job was already
queued (its stream entry is older than the end of the previous job): the time no rank works while
work waits. Upload and encoding of the previous job overlap the next job and are not in either.
"""

from __future__ import annotations

from typing import Any

from services import metrics


def queued_at(entry_id: str) -> float:
    """When an entry was added to its stream: its id's milliseconds (Redis' clock)."""
    return int(entry_id.partition("-")[0]) / 1000


class GangUtilization:
    def __init__(self) -> None:
        self._free_at: float | None = None  # end of the gang's last finished job

    def record(self, task: str, entry_id: str, result: dict[str, Any]) -> float | None:
        """Count one finished job's busy time; its hand-over in seconds when it had been queued."""
        start, end = result.get("gang_started_at"), result.get("gang_ended_at")
        if start is None or end is None:
            return None
        metrics.GANG_BUSY_SECONDS.labels(task).inc(end - start)
        handover = None
        if self._free_at is not None and queued_at(entry_id) < self._free_at:
            handover = max(0.0, start - self._free_at)
            metrics.GANG_HANDOVER_SECONDS.labels(task).observe(handover)
        self._free_at = end
        return handover

    def interrupted(self) -> None:
        """A job that did not finish (cancelled, failed, gang rebuilt): the next gap is not a hand-over."""
        self._free_at = None
