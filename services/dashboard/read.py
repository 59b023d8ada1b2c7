"""Tolerant reads for the dashboard: task hashes, dead letters and stream scans that skip what they
cannot decode, so one odd entry in Redis never takes a page down."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import structlog
from redis.asyncio import Redis

from services.consumer import wire
from services.contracts import dead_letter_decoder
from services.ingest.api_error import ApiError
from services.keys import Keys
from services.notifier.dlq import WebhookDeadLetter
from services.taskreads import DECODE_ERRORS

log = structlog.get_logger("wan22.dashboard")

ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
SCAN_CHUNK = 2_000
_webhook_letter = msgspec.json.Decoder(WebhookDeadLetter)


def check_entry_id(value: str, field: str) -> str:
    """Stream ids only: Redis answers a malformed id with an error that would read as an outage."""
    if not ENTRY_ID.fullmatch(value):
        raise ApiError(422, f"{field} must be a stream entry id like 1700000000000-0", field, "invalid")
    return value


async def job_dead_letters(redis: Redis, keys: Keys, count: int) -> list[dict[str, Any]]:
    """Dead-lettered jobs and events, oldest first; an entry that does not decode is listed as such
    (so it can still be purged) rather than failing the list."""
    rows = []
    for entry_id, fields in wire.text_rows(await wire.xrange(redis, keys.dlq, count=count)):
        try:
            d = dead_letter_decoder.decode(fields["payload"])
        except DECODE_ERRORS:
            rows.append(_undecodable(entry_id, fields, "jobs"))
            continue
        last = d.errors[-1].error if d.errors else ""
        rows.append(
            {"id": entry_id, "kind": "jobs", "stream": d.stream, "task_id": d.task_id, "reason": d.reason}
            | {"attempts": d.attempts, "error": last, "dead_at": d.dead_at}
        )
    return rows


async def webhook_dead_letters(redis: Redis, keys: Keys, count: int) -> list[dict[str, Any]]:
    rows = []
    for entry_id, fields in wire.text_rows(await wire.xrange(redis, keys.webhook_dlq, count=count)):
        try:
            rows.append(webhook_letter_row(entry_id, _webhook_letter.decode(fields["payload"])))
        except DECODE_ERRORS:
            rows.append(_undecodable(entry_id, fields, "webhooks"))
    return rows


def webhook_letter_row(entry_id: str, letter: WebhookDeadLetter) -> dict[str, Any]:
    d, last = letter.delivery, letter.attempts[-1] if letter.attempts else None
    error = (last.error or (f"HTTP {last.status}" if last.status else "")) if last else ""
    return {
        "id": entry_id,
        "kind": "webhooks",
        "stream": d.url,
        "task_id": d.task_id,
        "reason": letter.reason,
        "attempts": len(letter.attempts),
        "error": error,
        "dead_at": letter.dead_at,
        "event": d.event,
        "delivery_id": d.id,
    }


def decode_webhook_letter(raw: str) -> WebhookDeadLetter | None:
    try:
        return _webhook_letter.decode(raw)
    except DECODE_ERRORS:
        return None


def _undecodable(entry_id: str, fields: dict[str, str], kind: str) -> dict[str, Any]:
    return {
        "id": entry_id,
        "kind": kind,
        "stream": "",
        "task_id": fields.get("task_id", ""),
        "reason": "undecodable",
        "attempts": 0,
        "error": "this dead letter cannot be decoded (purge it)",
        "dead_at": 0.0,
    }


async def scan_since(
    redis: Redis, stream: str, since_ms: int, limit: int, until_ms: int | None = None
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Entries of `stream` from `since_ms` (to `until_ms`; ids are times), in chunks, at most `limit`."""
    start, end, seen = f"{max(since_ms, 0)}-0", "+" if until_ms is None else str(until_ms), 0
    while seen < limit:
        read = await wire.xrange(redis, stream, start, end, count=min(SCAN_CHUNK, limit - seen))
        for row in wire.text_rows(read):
            yield row
        seen += len(read)
        if len(read) < SCAN_CHUNK:
            return
        start = "(" + read[-1].id


async def scan_back(redis: Redis, stream: str, since_ms: int, limit: int) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Entries of `stream` from now back to `since_ms`, newest first, at most `limit`."""
    end, floor, seen = "+", f"{max(since_ms, 0)}-0", 0
    while seen < limit:
        read = await wire.xrevrange(redis, stream, end, floor, count=min(SCAN_CHUNK, limit - seen))
        for row in wire.text_rows(read):
            yield row
        seen += len(read)
        if len(read) < SCAN_CHUNK:
            return
        end = "(" + read[-1].id


def entry_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])
