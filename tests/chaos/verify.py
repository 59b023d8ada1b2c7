"""After the soak: wait for quiescence, then check every request against what the stack did."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import anyio

from services.contracts import TERMINAL
from services.keys import GENERATOR_GROUP, INGEST_GROUP, NOTIFIER_GROUP, Keys
from tests.chaos.soak import Soak
from wan.video import probe_mp4

KEYS = Keys()


@dataclass
class Check:
    name: str
    expected: str
    observed: str
    ok: bool


async def events_by_task(redis) -> dict[str, list[dict]]:  # type: ignore[no-untyped-def]
    found: dict[str, list[dict]] = defaultdict(list)
    for entry_id, fields in await redis.xrange(KEYS.events):
        found[fields["task_id"]].append(json.loads(fields["payload"]) | {"type": fields["type"], "id": entry_id})
    return found


def expected_tasks(soak: Soak) -> set[str]:
    return {r.task_id for r in soak.requests if not r.malformed and r.task_id}


async def quiesce(redis, soak: Soak, timeout: float) -> float:  # type: ignore[no-untyped-def]
    """Until every valid task is terminal, every pending list is empty and every webhook is out."""
    started = anyio.current_time()
    with anyio.fail_after(timeout):
        while True:
            states = [await redis.hget(KEYS.task(t), "status") for t in expected_tasks(soak)]
            busy = sum([await _pending(redis, s, g) for s, g in _groups()])
            scheduled = await redis.zcard(KEYS.webhook_schedule)
            if all(s in TERMINAL for s in states) and not busy and not scheduled:
                return anyio.current_time() - started
            await anyio.sleep(0.5)


def _groups() -> list[tuple[str, str]]:
    return [(KEYS.requests, INGEST_GROUP), (KEYS.jobs("demo"), GENERATOR_GROUP), (KEYS.events, NOTIFIER_GROUP)]


async def _pending(redis, stream: str, group: str) -> int:  # type: ignore[no-untyped-def]
    try:
        return int((await redis.xpending(stream, group))["pending"])
    except Exception:
        return 0


async def check(redis, soak: Soak) -> list[Check]:  # type: ignore[no-untyped-def]
    events = await events_by_task(redis)
    checks = [
        await _terminal(redis, soak, events),
        await _videos(redis, soak),
        _rejections(soak, events),
        _duplicates(soak),
        await _cancels(redis, soak),
        *_webhooks(soak, events),
    ]
    pending = {f"{s}/{g}": await _pending(redis, s, g) for s, g in _groups()}
    checks.append(Check("pending lists empty", "0 everywhere", str(pending), not any(pending.values())))
    dead = await redis.xlen(KEYS.dlq), await redis.xlen(KEYS.webhook_dlq)
    checks.append(Check("dead letters", "0 jobs/events, 0 webhooks", f"{dead[0]} / {dead[1]}", dead == (0, 0)))
    outage = soak.outage_answers
    checks.append(Check("HTTP while Redis is down", "503 JSON", str(outage), bool(outage) and set(outage) == {503}))
    return checks


async def _terminal(redis, soak: Soak, events: dict) -> Check:  # type: ignore[no-untyped-def]
    counts = {t: sum(1 for e in events.get(t, []) if e["type"] in TERMINAL) for t in expected_tasks(soak)}
    lost = [t for t, c in counts.items() if c == 0]
    doubled = [t for t, c in counts.items() if c > 1]
    observed = f"{len(counts)} tasks, lost {len(lost)}, duplicate terminal events {len(doubled)}"
    return Check(
        "one terminal event per valid task",
        f"{len(counts)} tasks, lost 0, duplicates 0",
        observed,
        not lost and not doubled,
    )


async def _videos(redis, soak: Soak) -> Check:  # type: ignore[no-untyped-def]
    completed, decodable = 0, 0
    for task_id in expected_tasks(soak):
        state = await redis.hgetall(KEYS.task(task_id))
        if state.get("status") != "completed":
            continue
        completed += 1
        path = Path(urlparse(state["video_url"]).path)
        if path.is_file() and probe_mp4(path.read_bytes())[0] == 5:
            decodable += 1
    return Check("completed tasks have a decodable video", f"{completed}", f"{decodable}", completed == decodable)


def _rejections(soak: Soak, events: dict) -> Check:
    rejected = Counter(e["request_id"] for es in events.values() for e in es if e["type"] == "rejected")
    stream_bad = [r for r in soak.requests if r.malformed and r.door == "stream"]
    http_bad = [r for r in soak.requests if r.malformed and r.door == "http"]
    stream_ok = all(rejected[r.request_id] == 1 for r in stream_bad)
    http_ok = all(400 <= r.status < 500 for r in http_bad)
    reasons = all(e.get("error") for es in events.values() for e in es if e["type"] == "rejected")
    observed = (
        f"stream: {sum(rejected[r.request_id] == 1 for r in stream_bad)}/{len(stream_bad)} rejected once; "
        f"http: {sum(400 <= r.status < 500 for r in http_bad)}/{len(http_bad)} 4xx"
    )
    return Check(
        "malformed requests rejected once with a reason",
        f"{len(stream_bad)} + {len(http_bad)}",
        observed,
        stream_ok and http_ok and reasons,
    )


def _duplicates(soak: Soak) -> Check:
    by_index = {r.index: r for r in soak.requests}
    twins = [r for r in soak.requests if r.duplicate_of is not None]
    mapped = [r for r in twins if r.task_id and r.task_id == by_index[r.duplicate_of].task_id]
    return Check(
        "idempotent duplicates map to the first task", f"{len(twins)}", f"{len(mapped)}", len(mapped) == len(twins)
    )


async def _cancels(redis, soak: Soak) -> Check:  # type: ignore[no-untyped-def]
    """A cancel the API accepted (cancelled, cancelling) ends cancelled with no video; one that
    came too late (409: the task had already completed, as a tiny job can between faults) leaves
    the completed task and its video alone."""
    asked = [r for r in soak.requests if r.cancel and not r.malformed]
    accepted = [r for r in asked if r.cancel_outcome in ("cancelled", "cancelling")]
    late = [r for r in asked if r.cancel_outcome == "task is already completed"]
    good = 0
    for request in accepted:
        state = await redis.hgetall(KEYS.task(request.task_id))
        good += state.get("status") == "cancelled" and not state.get("video_url")
    for request in late:
        state = await redis.hgetall(KEYS.task(request.task_id))
        good += state.get("status") == "completed" and bool(state.get("video_url"))
    observed = f"{good} ({len(accepted)} accepted, {len(late)} too late); answers {[r.cancel_outcome for r in asked]}"
    return Check("cancels honoured (accepted: cancelled, no video)", f"{len(asked)}", observed, good == len(asked))


def _webhooks(soak: Soak, events: dict) -> list[Check]:
    delivered = soak.receiver.events_by_task()
    want = {t for t in expected_tasks(soak) if any(e["type"] in TERMINAL for e in events.get(t, []))}
    missing = [t for t in want if not any(kind in TERMINAL for kind in delivered.get(t, []))]
    receiver = soak.receiver
    return [
        Check(
            "terminal webhooks delivered, signatures valid",
            f"{len(want)}, 0 bad",
            f"{len(want) - len(missing)}, {receiver.bad_signatures} bad",
            not missing and not receiver.bad_signatures,
        ),
        Check(
            "webhook redeliveries (deduped on webhook-id)",
            "counted",
            f"{sum(receiver.duplicates.values())} duplicates over {receiver.calls} calls, "
            f"{receiver.failed_on_purpose} failed on purpose",
            True,
        ),
    ]


def table(checks: list[Check], faults: list[tuple[str, float, float]], quiet_s: float) -> str:
    lines = [f"{'check':<50} {'expected':<28} {'observed':<60} ok"]
    lines += [f"{c.name:<50} {c.expected:<28} {c.observed:<60} {'yes' if c.ok else 'NO'}" for c in checks]
    lines.append("")
    lines.append(f"{'fault':<40} {'at (s)':>8} {'recovered in (s)':>17}")
    lines += [f"{name:<40} {at:>8.1f} {took:>17.1f}" for name, at, took in faults]
    lines.append(f"quiescent {quiet_s:.1f} s after the load ended")
    return "\n".join(lines)
