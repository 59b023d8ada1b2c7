"""The one path both front doors share: parse → normalize → backpressure → accept."""

from __future__ import annotations

from functools import partial

from services import metrics
from services.contracts import GenerateRequest, Job
from services.ingest.backpressure import LagMonitor
from services.ingest.coalesce import AcceptCoalescer
from services.ingest.invalid import Invalid
from services.ingest.normalize import Normalizer
from services.ingest.settings import IngestSettings
from services.tasks import AcceptResult, TaskStore


class Door:
    def __init__(self, tasks: TaskStore, normalizer: Normalizer, lag: LagMonitor, settings: IngestSettings) -> None:
        self.tasks, self.normalize, self.lag, self.settings = tasks, normalizer, lag, settings
        self._http_accepts = AcceptCoalescer(partial(self.accept, door="http"))

    def prepare(self, request: GenerateRequest, request_id: str, door: str) -> Job:
        """The normalized job, or Invalid naming the field and the reason (no I/O)."""
        try:
            job = self.normalize(request, request_id)
            if self.lag.lag.get(job.task, 0) >= self.settings.max_queue_lag:
                message = f"the {job.task} queue is full ({self.settings.max_queue_lag} waiting); retry later"
                raise Invalid(message, None, "queue_full")
        except Invalid as exc:
            metrics.REQUESTS.labels(door, "rejected", exc.reason).inc()
            raise
        return job

    async def accept(self, jobs: list[tuple[Job, str | None]], door: str) -> list[AcceptResult]:
        ttl = self.settings.idempotency_ttl_s
        # Only an HTTP answer waits for replicas. The stream door's answer is an event, readable
        # before any WAIT; and its request entry stays pending until the XACK, which replicates
        # after the accept: a replica that has the ack has the accept, and one without it
        # redelivers the entry. A failed WAIT there would only burn the entry's attempts.
        stream = door == "stream"
        results = await self.tasks.accept_many(jobs, ttl, answer_once=stream, confirm=not stream)
        for result in results:
            outcome = "accepted" if result.created else "redelivered" if result.redelivered else "duplicate"
            metrics.REQUESTS.labels(door, outcome, "").inc()
        return results

    async def run(self) -> None:
        """Serve the HTTP door's accepts until cancelled."""
        await self._http_accepts.run()

    async def submit(self, request: GenerateRequest, request_id: str, idempotency_key: str | None) -> AcceptResult:
        """One request of the HTTP door."""
        job = self.prepare(request, request_id, "http")
        return await self._http_accepts.accept(job, idempotency_key or request.idempotency_key)
