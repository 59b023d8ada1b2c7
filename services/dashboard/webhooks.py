"""Webhook deliveries of one task, for the task page.

The notifier keeps no per-task index. A delivery's id is derived from the event entry and the
target (`store.delivery_id`), so the task's events and the subscription ids name every delivery
hash it may have made; those hashes last `WAN22_WEBHOOK_RECORD_TTL_S` after they finish. Deliveries that were
dead-lettered stay in the webhook DLQ, which is scanned for the task as well."""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio import Redis

from services.consumer import wire
from services.dashboard.read import decode_webhook_letter, webhook_letter_row
from services.keys import Keys
from services.notifier import store
from services.notifier.store import TASK_TARGET
from services.redisconn import text_hash
from services.taskreads import DECODE_ERRORS

DLQ_SCAN = 5_000


async def deliveries_of(
    redis: Redis, keys: Keys, task_id: str, webhook_url: str, events: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Every delivery made for the task's events (entry id, event type), plus its dead letters."""
    targets = await _targets(redis, keys, webhook_url)
    candidates = [
        (entry_id, kind, target, url, store.delivery_id(keys.events, entry_id, target))
        for entry_id, kind in events
        for target, url in targets.items()
    ]
    async with redis.pipeline(transaction=False) as pipe:
        for *_, delivery in candidates:
            pipe.hmget(keys.webhook_delivery(delivery), ["status", "attempts", "claims"])
        rows = await pipe.execute()
    found = [
        _row(entry_id, kind, target, url, delivery, values)
        for (entry_id, kind, target, url, delivery), values in zip(candidates, rows, strict=True)
        if values[0] is not None
    ]
    return _with_dead_letters(found, await _dead_letters(redis, keys, task_id))


async def _targets(redis: Redis, keys: Keys, webhook_url: str) -> dict[str, str]:
    """Target id → URL: the task's own webhook_url and every subscription (skipping odd ones)."""
    targets = {TASK_TARGET: webhook_url} if webhook_url else {}
    for sub_id, raw in (await text_hash(redis, keys.webhooks)).items():
        try:
            targets[sub_id] = str(msgspec.json.decode(raw)["url"])
        except DECODE_ERRORS:
            continue
    return targets


def _row(entry_id: str, kind: str, target: str, url: str, delivery: str, values: list[Any]) -> dict[str, Any]:
    status, raw_attempts, claims = values
    try:
        attempts = msgspec.to_builtins(store.decode_attempts(raw_attempts))
    except DECODE_ERRORS:
        attempts = []
    return {
        "delivery_id": delivery,
        "event": kind,
        "entry_id": entry_id,
        "target": target,
        "url": url,
        "status": status,
        "claims": int(claims or 0),
        "attempts": attempts,
        "dlq_id": "",
    }


async def _dead_letters(redis: Redis, keys: Keys, task_id: str) -> list[dict[str, Any]]:
    rows = []
    for entry_id, fields in wire.text_rows(await wire.xrevrange(redis, keys.webhook_dlq, count=DLQ_SCAN)):
        if fields.get("task_id") != task_id:
            continue
        letter = decode_webhook_letter(fields.get("payload", ""))
        if letter is not None:
            row = webhook_letter_row(entry_id, letter)
            row["attempts_list"] = msgspec.to_builtins(letter.attempts)
            row["url"] = letter.delivery.url
            row["target"] = letter.delivery.target
            rows.append(row)
    return rows


def _with_dead_letters(found: list[dict[str, Any]], letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attach each dead letter to its delivery; one whose hash expired becomes a row of its own."""
    by_id = {row["delivery_id"]: row for row in found}
    for letter in letters:
        row = by_id.get(letter["delivery_id"])
        if row is None:
            row = {
                "delivery_id": letter["delivery_id"],
                "event": letter["event"],
                "entry_id": "",
                "target": letter["target"],
                "url": letter["url"],
                "status": "dead",
                "claims": 0,
                "attempts": letter["attempts_list"],
            }
            found.append(row)
            by_id[letter["delivery_id"]] = row
        row["dlq_id"], row["dead_reason"] = letter["id"], letter["reason"]
    return found
