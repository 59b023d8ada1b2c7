"""The JSON body of a webhook delivery, built from a lifecycle event and the task's state.

Every field is always present (empty string or null when unknown) so receivers can rely on the
shape; new fields are only ever added. Documented in docs/webhooks.md.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from services import contracts
from services.contracts import Event, TaskState

EVENT_STATUS = {
    "accepted": "queued",
    "rejected": "rejected",
    "started": "running",
    "retrying": "retrying",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
ALL_EVENTS = frozenset(EVENT_STATUS)
# What a task's own webhook_url receives, and a subscription without --events.
DEFAULT_EVENTS = frozenset({"started", "completed", "failed", "cancelled", "rejected"})


class TaskData(msgspec.Struct, kw_only=True):
    task_id: str
    event: str
    status: str
    task: str = ""
    video_url: str = ""
    poster_url: str = ""
    # completed: the video as made (an image job's size follows its image); 0 otherwise.
    width: int = 0
    height: int = 0
    frame_num: int = 0
    fps: int = 0
    error: str = ""
    field: str = ""
    reason: str = ""  # rejected: why; cancelled: who asked
    attempt: int = 0
    request_id: str = ""
    event_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    metadata: dict[str, str] = {}


class WebhookBody(msgspec.Struct, kw_only=True):
    type: str  # "task.<event>"
    timestamp: str  # ISO 8601 UTC of the event
    data: TaskData


_encoder = msgspec.json.Encoder()
body_decoder = msgspec.json.Decoder(WebhookBody)


def iso(ts: float) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_body(event: Event, state: TaskState | None) -> bytes:
    kind = contracts.event_type(event)
    data = TaskData(task_id=event.task_id, event=kind, status=EVENT_STATUS[kind], event_at=iso(event.ts))
    if state is not None:
        data.task, data.request_id, data.metadata = state.task, state.request_id, dict(state.metadata)
        data.video_url, data.poster_url, data.error = state.video_url, state.poster_url, state.error
        data.field, data.attempt = state.field, state.attempts
        data.created_at, data.updated_at = iso(state.created_at), iso(state.updated_at)
    _apply_event(data, event)
    return _encoder.encode(
        WebhookBody(type=f"task.{kind}", timestamp=data.event_at or iso(contracts.now()) or "", data=data)
    )


def _apply_event(data: TaskData, event: Event) -> None:
    """The event's own fields win over the hash, which may already have moved on."""
    match event:
        case contracts.Completed():
            data.video_url, data.poster_url, data.attempt, data.error = (
                event.video_url,
                event.poster_url,
                event.attempt,
                "",
            )
            data.width, data.height, data.frame_num, data.fps = event.width, event.height, event.frame_num, event.fps
        case contracts.Failed():
            data.error, data.attempt = event.error, event.attempts
        case contracts.Rejected():
            data.error, data.field, data.reason = event.error, event.field or "", event.reason
            data.request_id = data.request_id or event.request_id
        case contracts.Started():
            data.attempt, data.error = event.attempt, ""
        case contracts.Retrying():
            data.attempt, data.error = event.attempt, event.error
        case contracts.Cancelled():
            data.reason = event.reason
        case contracts.Accepted():
            data.request_id = data.request_id or event.request_id


def parse_events(text: str) -> list[str]:
    """`completed,failed` / `task.completed` / `all` → sorted event names; ValueError if unknown."""
    names = {part.strip().removeprefix("task.") for part in text.split(",") if part.strip()}
    if names == {"all"} or names == {"*"}:
        return sorted(ALL_EVENTS)
    unknown = names - ALL_EVENTS
    if unknown or not names:
        raise ValueError(
            f"unknown event(s) {', '.join(sorted(unknown)) or '(none)'}; known: {', '.join(sorted(ALL_EVENTS))}"
        )
    return sorted(names)
