"""The stream door: requests the Go control plane XADDs to `wan22:requests` (group `ingest`).
A malformed request becomes a `rejected` event (the requester must hear back) and is acked;
that includes an entry whose bytes are not UTF-8 text or that repeats a field. Every entry is
answered once, also when it is delivered again after its consumer died before acking it.
A whole read is validated in memory and accepted in one pipelined round trip."""

from __future__ import annotations

import structlog

from services.consumer import Entry
from services.contracts import Job, Rejected, is_task_id
from services.ingest import parse
from services.ingest.door import Door
from services.ingest.invalid import Invalid

log = structlog.get_logger("wan22.ingest")


class StreamDoor:
    def __init__(self, door: Door, max_bytes: int) -> None:
        self.door, self.max_bytes = door, max_bytes

    async def handle_batch(self, entries: list[Entry]) -> list[BaseException | None]:
        accepted: list[tuple[Job, str | None]] = []
        for entry in entries:
            try:
                accepted.append(self._prepare(entry))
            except Invalid as exc:
                await self._reject(entry, exc)
        if accepted:
            for (job, _), result in zip(accepted, await self.door.accept(accepted, "stream"), strict=True):
                log.debug("request.accepted", task_id=result.task_id, request_id=job.request_id, created=result.created)
        return [None] * len(entries)

    def _prepare(self, entry: Entry) -> tuple[Job, str | None]:
        if sum(len(k) + len(v) for k, v in entry.fields.items()) > self.max_bytes:
            raise Invalid(f"request is larger than {self.max_bytes} bytes", None, "too_large")
        if entry.defect is not None:
            raise Invalid(entry.defect.message, entry.defect.field, entry.defect.reason)
        request = parse.from_fields(entry.message_fields)
        return self.door.prepare(request, entry.id, "stream"), request.idempotency_key

    async def _reject(self, entry: Entry, exc: Invalid) -> None:
        raw_task_id = entry.fields.get("task_id", "")[:128]  # echoed so the producer can match it
        rejected = Rejected(
            task_id=raw_task_id, request_id=entry.id, error=exc.message, field=exc.field, reason=exc.reason
        )
        ttl = self.door.settings.idempotency_ttl_s
        if not await self.door.tasks.reject(rejected, record_state=is_task_id(raw_task_id), answer_ttl_s=ttl):
            return  # a redelivery of an entry rejected before
        log.info("request.rejected", request_id=entry.id, error=exc.message, field=exc.field, reason=exc.reason)
