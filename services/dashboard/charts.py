"""Per-minute figures over a recent window, from the service's own data: the lifecycle entries of
`wan22:events` (entry ids are server times) and the task hashes.

- accepted / completed / failed / cancelled / rejected per minute;
- queue depth per task at the end of each minute: the jobs waiting now (the generator group's
  lag over the task's streams, what KEDA scales on) walked back through the window: minus each
  minute's accepts, plus each minute's first starts. An estimate: the lag drops when a job is
  claimed, a step before its `started` entry, and a cancelled job leaves it unannounced when a
  generator claims and skips it;
- p50 / p95 time in queue (accepted → first started, by minute of the start) and run time (the
  `completed` entry's duration, by minute of completion)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.dashboard.read import entry_ms, scan_back
from services.keys import GENERATOR_GROUP, Keys
from services.taskreads import DECODE_ERRORS

BUCKET_S = 60
CHART_SCAN = 200_000  # entries read at most, newest first: the figures say `truncated` beyond it
COUNTED = ("accepted", "completed", "failed", "cancelled", "rejected")


class _Lite(msgspec.Struct):
    """The few payload fields the figures need (the rest is skipped by the decoder)."""

    task: str = ""
    attempt: int = 0
    duration_s: float = 0.0
    idempotent_replay: bool = False


_lite = msgspec.json.Decoder(_Lite)


@dataclass
class _Window:
    start: float
    minutes: int
    counts: dict[str, list[int]] = field(default_factory=dict)
    task_of: dict[str, str] = field(default_factory=dict)
    accepted_at: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # first start in the window
    accepts: list[tuple[str, int]] = field(default_factory=list)  # (task id, minute)
    runs: list[tuple[int, float]] = field(default_factory=list)
    scanned: int = 0

    def minute(self, at: float) -> int:
        return min(max(int((at - self.start) // BUCKET_S), 0), self.minutes - 1)


async def charts(redis: Redis, keys: Keys, tasks: list[str], minutes: int, now: float | None = None) -> dict[str, Any]:
    end = time.time() if now is None else now
    w = _Window(start=end - minutes * BUCKET_S, minutes=minutes)
    w.counts = {kind: [0] * minutes for kind in COUNTED}
    async for entry_id, fields in scan_back(redis, keys.events, int(w.start * 1000), CHART_SCAN):
        w.scanned += 1
        _take(w, entry_id, fields)
    await _fill_unknown(redis, keys, w)
    waits = [(w.minute(at), at - w.accepted_at[t]) for t, at in w.started.items() if t in w.accepted_at]
    return {
        "start": w.start,
        "end": end,
        "bucket_s": BUCKET_S,
        "minutes": minutes,
        "counts": w.counts,
        "queue_depth": {task: await _depth_series(redis, keys, task, w) for task in tasks},
        "queue_wait": _percentiles(waits, minutes),
        "run_time": _percentiles(w.runs, minutes),
        "scanned": w.scanned,
        "truncated": w.scanned >= CHART_SCAN,
    }


def _take(w: _Window, entry_id: str, fields: dict[str, str]) -> None:
    kind, task_id = fields.get("type", ""), fields.get("task_id", "")
    if (kind not in COUNTED and kind != "started") or not task_id:
        return
    try:
        lite = _lite.decode(fields.get("payload", "{}"))
    except DECODE_ERRORS:
        return
    at = entry_ms(entry_id) / 1000
    if kind == "accepted":
        if lite.idempotent_replay:
            return  # a repeated request, not a new task
        w.task_of[task_id], w.accepted_at[task_id] = lite.task, at
        w.accepts.append((task_id, w.minute(at)))
    elif kind == "started":
        if lite.attempt <= 1:  # the first attempt (a handed-back job starts it again: keep the first)
            w.started[task_id] = min(w.started.get(task_id, at), at)
        return
    elif kind == "completed" and lite.duration_s > 0:
        w.runs.append((w.minute(at), lite.duration_s))
    w.counts[kind][w.minute(at)] += 1


async def _fill_unknown(redis: Redis, keys: Keys, w: _Window) -> None:
    """Task type and accept time of tasks accepted before the window, from their hashes."""
    unknown = [t for t in w.started if t not in w.task_of]
    if not unknown:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in unknown:
            pipe.hmget(keys.task(task_id), ["task", "created_at"])
        rows = await pipe.execute()
    for task_id, (task, created_at) in zip(unknown, rows, strict=True):
        w.task_of[task_id] = task or ""
        try:
            w.accepted_at[task_id] = float(created_at)
        except (TypeError, ValueError):
            continue


async def _depth_series(redis: Redis, keys: Keys, task: str, w: _Window) -> list[int]:
    """Waiting jobs of `task` at the end of each minute, walked back from now."""
    delta = [0] * w.minutes  # accepts minus departures per minute
    for task_id, minute in w.accepts:
        delta[minute] += w.task_of.get(task_id) == task
    for task_id, at in w.started.items():
        delta[w.minute(at)] -= w.task_of.get(task_id) == task
    depth, series = await waiting(redis, keys, task), [0] * w.minutes
    for minute in range(w.minutes - 1, -1, -1):
        series[minute] = max(depth, 0)
        depth -= delta[minute]
    return series


async def waiting(redis: Redis, keys: Keys, task: str) -> int:
    """Jobs of `task` not yet claimed: the generator group's lag over every priority (the whole
    stream when no generator has created its group yet)."""
    total = 0
    for stream in keys.job_streams(task):
        try:
            groups = await redis.xinfo_groups(stream)
        except ResponseError:
            continue  # no such stream yet
        group = next((g for g in groups if g.get("name") == GENERATOR_GROUP), None)
        if group is None:
            total += int(await redis.xlen(stream))
        elif group.get("lag") is not None:
            total += int(group["lag"])
    return total


def _percentiles(samples: list[tuple[int, float]], minutes: int) -> dict[str, Any]:
    per_minute: list[list[float]] = [[] for _ in range(minutes)]
    for minute, value in samples:
        per_minute[minute].append(value)
    every = [value for _, value in samples]
    return {
        "p50": [percentile(values, 50) for values in per_minute],
        "p95": [percentile(values, 95) for values in per_minute],
        "overall": {"p50": percentile(every, 50), "p95": percentile(every, 95), "n": len(every)},
    }


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None without samples."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)], 3)
