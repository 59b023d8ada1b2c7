"""One task in full for the task page: its state, the parameters of its job, a timeline of every
lifecycle and progress entry, its attempts and its webhook deliveries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from redis.asyncio import Redis

from services.consumer import wire
from services.contracts import TERMINAL, Job, TaskState, dead_letter_decoder, job_decoder
from services.dashboard.read import entry_ms, scan_since
from services.dashboard.webhooks import deliveries_of
from services.keys import Keys
from services.taskreads import DECODE_ERRORS, read_state

EVENTS_SCAN = 50_000  # entries read at most per stream; far more than a task's lifetime holds
TIMELINE_LIMIT = 2_000
DLQ_SCAN = 5_000
SLACK_MS = 5_000  # clock skew between the writers' `ts` and the Redis ids
IMAGE_PREVIEW = 96


async def task_detail(redis: Redis, keys: Keys, task_id: str, file_url: Callable[[str], str]) -> dict[str, Any] | None:
    state = await read_state(redis, keys, task_id)
    if state is None:
        return None
    timeline, truncated = await _timeline(redis, keys, state)
    events = [(e["id"], e["type"]) for e in timeline if e["type"] != "progress"]
    return {
        "state": msgspec.to_builtins(state),
        "video": file_url(state.video_url),
        "poster": file_url(state.poster_url),
        "params": await _params(redis, keys, state),
        "timeline": timeline,
        "timeline_truncated": truncated,
        "attempts": attempts_of(timeline),
        "webhooks": await deliveries_of(redis, keys, task_id, state.webhook_url, events),
    }


async def _timeline(redis: Redis, keys: Keys, state: TaskState) -> tuple[list[dict[str, Any]], bool]:
    """Lifecycle and progress entries of the task, oldest first, read from its creation on."""
    since = int(state.created_at * 1000) - SLACK_MS if state.created_at else 0
    # A finished task has nothing after its last update: stop there instead of reading to now.
    until = int(state.updated_at * 1000) + SLACK_MS if state.status in TERMINAL and state.updated_at else None
    entries: list[dict[str, Any]] = []
    truncated = False
    for stream, default in ((keys.events, ""), (keys.progress, "progress")):
        scanned = 0
        async for entry_id, fields in scan_since(redis, stream, since, EVENTS_SCAN, until):
            scanned += 1
            if fields.get("task_id") == state.task_id and (item := _entry(entry_id, fields, default)) is not None:
                entries.append(item)
        truncated |= scanned >= EVENTS_SCAN
    entries.sort(key=_order(entries))
    truncated |= len(entries) > TIMELINE_LIMIT
    return entries[:TIMELINE_LIMIT], truncated


def _order(entries: list[dict[str, Any]]) -> Callable[[dict[str, Any]], tuple[float, str]]:
    """Time order, except that an attempt's `started` comes before its progress: progress carries
    the time a step ended, `started` the moment after step 1 when it was published."""
    first_step: dict[int, float] = {}
    for e in entries:
        if e["type"] == "progress" and (n := _attempt(e)):
            first_step[n] = min(first_step.get(n, e["at"]), e["at"])

    def key(e: dict[str, Any]) -> tuple[float, str]:
        if e["type"] == "started" and (n := _attempt(e)) in first_step:
            return min(e["at"], first_step[n] - 1e-6), e["id"]
        return e["at"], e["id"]

    return key


def _attempt(e: dict[str, Any]) -> int:
    value = e.get("attempt")
    return value if isinstance(value, int) else 0


def _entry(entry_id: str, fields: dict[str, str], default: str) -> dict[str, Any] | None:
    """The entry's payload with its id, type and time; None for what does not decode."""
    kind = fields.get("type") or default
    try:
        payload = msgspec.json.decode(fields.get("payload", ""))
    except msgspec.DecodeError:
        return None
    if not kind or not isinstance(payload, dict):
        return None
    at = payload.get("ts") if isinstance(payload.get("ts"), int | float) and payload.get("ts") else None
    return payload | {"id": entry_id, "type": kind, "at": float(at or entry_ms(entry_id) / 1000)}


def attempts_of(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per attempt: worker, start, end, outcome and error, from the lifecycle entries."""
    attempts: dict[int, dict[str, Any]] = {}

    def row(number: Any) -> dict[str, Any]:
        n = number if isinstance(number, int) and number > 0 else max(attempts, default=1)
        return attempts.setdefault(n, {"attempt": n, "worker": "", "started_at": None, "ended_at": None})

    for e in timeline:
        kind = e["type"]
        if kind == "started":
            row(e.get("attempt")).update(worker=e.get("worker", ""), started_at=e["at"], outcome="running")
        elif kind == "retrying":
            row(e.get("attempt")).update(ended_at=e["at"], outcome="retrying", error=e.get("error", ""))
        elif kind in TERMINAL and attempts:
            number = e.get("attempt") if kind == "completed" else max(attempts)
            row(number).update(ended_at=e["at"], outcome=kind, error=e.get("error", ""))
    return [attempts[n] for n in sorted(attempts)]


async def _params(redis: Redis, keys: Keys, state: TaskState) -> dict[str, Any] | None:
    """The job as ingest wrote it: from its job stream, or from a dead letter when it was trimmed."""
    job = await _job_on_stream(redis, keys, state) or await _job_in_dlq(redis, keys, state.task_id)
    if job is None:
        return None
    params = msgspec.to_builtins(job)
    image = params.get("image") or ""
    if image.startswith("data:"):  # may be megabytes: say what it is, not all of it
        params["image"] = f"{image[:IMAGE_PREVIEW]}… ({len(image)} characters)"
    return params


async def _job_on_stream(redis: Redis, keys: Keys, state: TaskState) -> Job | None:
    if not state.queue_entry or not state.task:
        return None
    stream = keys.jobs(state.task, state.priority or "normal")
    rows = wire.text_rows(await wire.xrange(redis, stream, state.queue_entry, state.queue_entry))
    return _decode_job(rows[0][1].get("payload", "")) if rows else None


async def _job_in_dlq(redis: Redis, keys: Keys, task_id: str) -> Job | None:
    for _, fields in wire.text_rows(await wire.xrevrange(redis, keys.dlq, count=DLQ_SCAN)):
        if fields.get("task_id") != task_id:
            continue
        try:
            letter = dead_letter_decoder.decode(fields["payload"])
        except DECODE_ERRORS:
            continue
        if (job := _decode_job(letter.fields.get("payload", ""))) is not None:
            return job
    return None


def _decode_job(raw: str) -> Job | None:
    try:
        return job_decoder.decode(raw)
    except DECODE_ERRORS:
        return None
