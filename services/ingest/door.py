"""The one path both front doors share: parse → normalize → backpressure → accept."""

from __future__ import annotations

from services import metrics
from services.contracts import GenerateRequest
from services.ingest.backpressure import LagMonitor
from services.ingest.invalid import Invalid
from services.ingest.normalize import Normalizer
from services.ingest.settings import IngestSettings
from services.tasks import AcceptResult, TaskStore


class Door:
    def __init__(self, tasks: TaskStore, normalizer: Normalizer, lag: LagMonitor, settings: IngestSettings) -> None:
        self.tasks, self.normalize, self.lag, self.settings = tasks, normalizer, lag, settings

    async def submit(
        self, request: GenerateRequest, request_id: str, idempotency_key: str | None, door: str
    ) -> AcceptResult:
        """Raises Invalid (the field and the reason) for anything that cannot be queued."""
        try:
            job = self.normalize(request, request_id)
            if self.lag.lag.get(job.task, 0) >= self.settings.max_queue_lag:
                raise Invalid(
                    f"the {job.task} queue is full ({self.settings.max_queue_lag} waiting); retry later",
                    None,
                    "queue_full",
                )
        except Invalid as exc:
            metrics.REQUESTS.labels(door, "rejected", exc.reason).inc()
            raise
        result = await self.tasks.accept(
            job, idempotency_key or request.idempotency_key, self.settings.idempotency_ttl_s
        )
        metrics.REQUESTS.labels(door, "accepted" if result.created else "duplicate", "").inc()
        return result
