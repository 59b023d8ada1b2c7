"""`wan22 submit | status | watch | cancel`: one task at a time, as an operator or a script."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx
import msgspec
from redis.asyncio import Redis

from services.cli import common
from services.cli.errors import CliError
from services.consumer import Entry, wire
from services.contracts import QueueInfo, TaskState
from services.follow import follow, last_id
from services.keys import PRIORITIES, Keys
from services.queueinfo import QueueEstimator
from services.settings import CommonSettings
from services.tasks import TaskStore


def register(subparsers: argparse._SubParsersAction) -> None:
    submit = subparsers.add_parser("submit", help="queue a task (via the requests stream, or HTTP with --api)")
    common.add_connection(submit)
    submit.add_argument("--task", required=True)
    submit.add_argument("--prompt", required=True)
    for flag in ("--image", "--size", "--negative-prompt", "--webhook", "--task-id"):
        submit.add_argument(flag)
    submit.add_argument("--frames", type=int)
    submit.add_argument("--steps", type=int)
    submit.add_argument("--seed", type=int)
    submit.add_argument("--priority", choices=PRIORITIES, help="claimed before lower ones (default normal)")
    submit.add_argument("--deadline", type=float, metavar="SECONDS", help="fail as expired if still queued then")
    submit.add_argument("--api", help="ingest base URL: submit over HTTP instead of the stream")
    submit.add_argument("--token", help="bearer token for --api")
    submit.add_argument("--wait", action="store_true", help="show progress until done; non-zero exit on failure")
    submit.set_defaults(run=_submit)

    status = subparsers.add_parser("status", help="a task's state")
    common.add_connection(status)
    status.add_argument("task_id")
    status.set_defaults(run=_status)

    watch = subparsers.add_parser("watch", help="a live progress bar until the task ends")
    common.add_connection(watch)
    watch.add_argument("task_id")
    watch.set_defaults(run=_watch)

    cancel = subparsers.add_parser("cancel", help="cancel a task (queued: at once; running: at its next step)")
    common.add_connection(cancel)
    cancel.add_argument("task_id")
    cancel.set_defaults(run=_cancel)


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = {
        "task": args.task,
        "prompt": args.prompt,
        "image": args.image,
        "size": args.size,
        "negative_prompt": args.negative_prompt,
        "webhook_url": args.webhook,
        "task_id": args.task_id,
        "frame_num": args.frames,
        "sample_steps": args.steps,
        "seed": args.seed,
        "priority": getattr(args, "priority", None),
        "deadline_s": getattr(args, "deadline", None),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _submit(args: argparse.Namespace) -> int:
    async def body(redis: Redis, keys: Keys, settings: CommonSettings) -> int:
        fields = request_fields(args)
        task_id = await (_submit_http(args, fields) if args.api else _submit_stream(redis, keys, fields))
        common.emit(args, {"task_id": task_id}, task_id)
        return await wait_for(redis, keys, task_id, quiet=args.json) if args.wait else common.OK

    return common.run(args, body)


async def _submit_stream(redis: Redis, keys: Keys, fields: dict[str, Any]) -> str:
    """XADD flat string fields, as the Go side does, then wait for `accepted` / `rejected`."""
    cursor = await last_id(redis, keys.events)
    request_id = await redis.xadd(keys.requests, {k: str(v) for k, v in fields.items()})
    while True:
        entries = await wire.xread(redis, {keys.events: cursor}, count=200, block_ms=30_000)
        if not entries:
            raise CliError("no answer from ingest within 30 s (is `wan22 ingest` running?)", common.UNAVAILABLE)
        cursor = entries[-1].id
        for entry in entries:
            event = _event_of(entry)
            if event is None or event.get("request_id") != request_id:
                continue
            if entry.fields.get("type") == "rejected":
                field = f" ({event['field']})" if event.get("field") else ""
                raise CliError(f"rejected{field}: {event.get('error')}", common.REJECTED)
            if entry.fields.get("type") == "accepted":
                return str(event["task_id"])


def _event_of(entry: Entry) -> dict[str, Any] | None:
    """The payload of an event entry; None for one that is not ours (anyone can write to the stream)."""
    try:
        event = json.loads(entry.fields["payload"]) if entry.defect is None else None
    except (KeyError, ValueError):
        return None
    return event if isinstance(event, dict) else None


async def _submit_http(args: argparse.Namespace, fields: dict[str, Any]) -> str:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    async with httpx.AsyncClient(base_url=args.api, timeout=30) as http:
        response = await http.post("/generate", json=fields, headers=headers)
    if response.status_code >= 400:
        error = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        code = common.REJECTED if response.status_code in (400, 413, 422, 429) else common.FAILED
        raise CliError(f"HTTP {response.status_code}: {error.get('error', response.text)}", code)
    return str(response.json()["task_id"])


async def wait_for(redis: Redis, keys: Keys, task_id: str, quiet: bool = False) -> int:
    """Progress bar until terminal; exit code 0 only for `completed`."""
    final: TaskState | None = None
    async for kind, _, payload in follow(redis, keys, task_id):
        data = json.loads(payload) if payload else {}
        if kind == "state":
            final = msgspec.json.decode(payload, type=TaskState)
        elif kind == "progress" and not quiet:
            common.progress_bar(data["percent"], label=f"step {data['step']}/{data['total']} {data['expert']}")
    if not quiet:
        sys.stderr.write("\n")
    state = await TaskStore(redis, keys).get(task_id) or final
    if state is None:
        raise CliError(f"no such task {task_id}", common.NOT_FOUND)
    if not quiet:
        detail = state.video_url or state.error
        print(f"{state.status}: {detail}" if detail else state.status, file=sys.stderr)
    return common.OK if state.status == "completed" else common.FAILED


def _status(args: argparse.Namespace) -> int:
    async def body(redis: Redis, keys: Keys, settings: CommonSettings) -> int:
        state = await TaskStore(redis, keys).get(args.task_id)
        if state is None:
            raise CliError(f"no such task {args.task_id}", common.NOT_FOUND)
        state.queue = await QueueEstimator(redis, keys, settings.lease_ms)(state)
        values = msgspec.structs.asdict(state)
        text = "\n".join(f"{k:>12}: {v}" for k, v in values.items() if v not in ("", {}, None) and k != "queue")
        if state.queue is not None:
            text += "\n" + f"{'queue':>12}: {describe_queue(state.queue)}"
        common.emit(args, state, text)
        return common.OK

    return common.run(args, body)


def describe_queue(queue: QueueInfo) -> str:
    """`position 3 (2 ahead), 1 generator, starts in ~2 min, done in ~3 min`."""
    plural = "" if queue.generators == 1 else "s"
    text = f"position {queue.position} ({queue.ahead} ahead), {queue.generators} generator{plural}"
    if queue.start_in_s is not None and queue.eta_s is not None:
        text += f", starts in ~{_duration(queue.start_in_s)}, done in ~{_duration(queue.eta_s)}"
    return text


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _watch(args: argparse.Namespace) -> int:
    async def body(redis: Redis, keys: Keys, settings: CommonSettings) -> int:
        if not await redis.exists(keys.task(args.task_id)):
            raise CliError(f"no such task {args.task_id}", common.NOT_FOUND)
        return await wait_for(redis, keys, args.task_id, quiet=args.json)

    return common.run(args, body)


def _cancel(args: argparse.Namespace) -> int:
    async def body(redis: Redis, keys: Keys, settings: CommonSettings) -> int:
        outcome = await TaskStore(redis, keys).cancel(args.task_id)
        if outcome == "missing":
            raise CliError(f"no such task {args.task_id}", common.NOT_FOUND)
        if outcome.startswith("already_"):
            raise CliError(f"task is already {outcome.removeprefix('already_')}", common.FAILED)
        common.emit(args, {"task_id": args.task_id, "status": outcome}, outcome)
        return common.OK

    return common.run(args, body)
