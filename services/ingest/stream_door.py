"""The stream door: requests the Go control plane XADDs to `wan22:requests` (group `ingest`).
A malformed request becomes a `rejected` event (the requester must hear back) and is acked."""

from __future__ import annotations

import structlog

from services.consumer import Entry
from services.contracts import Rejected
from services.ingest import parse
from services.ingest.door import Door
from services.ingest.invalid import Invalid

log = structlog.get_logger("wan22.ingest")


class StreamDoor:
    def __init__(self, door: Door, max_bytes: int) -> None:
        self.door, self.max_bytes = door, max_bytes

    async def handle(self, entry: Entry) -> None:
        task_id = entry.fields.get("task_id", "")[:128]  # echoed so the producer can match it
        valid_task_id = False
        try:
            if sum(len(k) + len(v) for k, v in entry.fields.items()) > self.max_bytes:
                raise Invalid(f"request is larger than {self.max_bytes} bytes", None, "too_large")
            request = parse.from_fields(entry.message_fields)
            task_id, valid_task_id = request.task_id or "", bool(request.task_id)
            result = await self.door.submit(request, entry.id, request.idempotency_key, "stream")
            log.info("request.accepted", task_id=result.task_id, created=result.created)
        except Invalid as exc:
            rejected = Rejected(
                task_id=task_id, request_id=entry.id, error=exc.message, field=exc.field, reason=exc.reason
            )
            await self.door.tasks.reject(rejected, record_state=valid_task_id)
            log.info("request.rejected", error=exc.message, field=exc.field, reason=exc.reason)
