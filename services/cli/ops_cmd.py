"""`wan22 groups` (consumer-group monitor) and `wan22 dlq` (dead letters: list, show, replay, purge)."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

import anyio
import msgspec
from redis.asyncio import Redis

from services import monitor
from services.cli import common
from services.cli.errors import CliError
from services.consumer import Undecodable, get_dead, list_dead, purge
from services.contracts import DeadLetter
from services.keys import Keys
from services.models_config import load_models
from services.settings import CommonSettings
from services.tasks import TaskStore


def register(subparsers: argparse._SubParsersAction) -> None:
    groups = subparsers.add_parser(
        "groups", help="streams and consumer groups (length, lag, pending, consumers) and generators' gangs"
    )
    common.add_connection(groups)
    groups.add_argument("--watch", action="store_true", help="refresh every --interval seconds")
    groups.add_argument("--interval", type=float, default=2.0)
    groups.set_defaults(run=_groups)

    dlq = subparsers.add_parser("dlq", help="dead-lettered jobs and events")
    actions = dlq.add_subparsers(dest="action", required=True)
    for name, help_text in (
        ("list", "list dead letters"),
        ("show", "one dead letter in full"),
        ("replay", "put dead letters back on their stream"),
        ("purge", "delete dead letters"),
    ):
        parser = actions.add_parser(name, help=help_text)
        common.add_connection(parser)
        if name in ("show", "replay", "purge"):
            parser.add_argument("ids", nargs="*" if name == "replay" else "+")
        if name == "replay":
            parser.add_argument("--all", action="store_true", help="every dead letter (or of --task)")
            parser.add_argument("--task", help="only jobs of this task")
        parser.set_defaults(run=_DLQ[name])


def _groups(args: argparse.Namespace) -> int:
    async def body(redis: Redis, keys: Keys, settings: CommonSettings) -> int:
        tasks = load_models(settings.models).names
        previous = None
        while True:
            snap = await monitor.snapshot(redis, keys, tasks, settings.lease_ms)
            if previous is not None:
                snap["flags"] += monitor.growing_without_consumer(previous, snap)
            common.emit(args, snap, render_groups(snap))
            if not args.watch:
                return common.OK
            previous = snap
            await anyio.sleep(args.interval)
            if not args.json:
                sys.stdout.write("\x1b[2J\x1b[H")

    return common.run(args, body)


def render_groups(snap: dict[str, Any]) -> str:
    lines = [f"{'stream':<28} {'len':>7} {'group':<12} {'lag':>6} {'pending':>8} {'oldest':>8}  consumers"]
    for stream in snap["streams"]:
        if not stream["groups"]:
            lines.append(f"{stream['stream']:<28} {stream['length']:>7}")
        for group in stream["groups"]:
            lag = "NULL" if group["lag"] is None else str(group["lag"])
            oldest = f"{group['oldest_pending_ms'] / 1000:.0f}s" if group["pending"] else "-"
            who = ", ".join(f"{c['name']}({c['pending']}, idle {c['idle_ms'] / 1000:.0f}s)" for c in group["consumers"])
            lines.append(
                f"{stream['stream']:<28} {stream['length']:>7} {group['group']:<12} {lag:>6} "
                f"{group['pending']:>8} {oldest:>8}  {who or '-'}"
            )
    for gang in snap.get("gangs", []):
        members = ", ".join(f"{m['rank']}:{m['node']}@{m['host']}" for m in gang["members"]) or "-"
        lines.append(
            f"gang {gang['consumer']}  {gang['task']}  {gang['state']} ({gang['for_s']:.0f}s)  "
            f"{gang['world_size']} x {gang['strategy']}  {members}"
        )
    dead = snap["dead_letters"]
    lines.append(f"dead letters: {dead['jobs_and_events']} (jobs/events), {dead['webhooks']} (webhooks)")
    lines += [f"! {flag}" for flag in snap["flags"]]
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    async def body(redis: Redis, keys: Keys, settings: CommonSettings) -> int:
        letters = await list_dead(redis, keys, count=10_000)
        rows: list[dict[str, Any]] = [
            {
                "id": i,
                "stream": d.stream,
                "task_id": d.task_id,
                "reason": d.reason,
                "attempts": d.attempts,
                "error": d.errors[-1].error if d.errors else "",
                "dead_at": d.dead_at,
            }
            for i, d in letters
        ]
        text = (
            "\n".join(
                f"{r['id']}  {r['stream']}  {r['task_id'] or '-'}  {r['reason']}  x{r['attempts']}  "
                f"{_when(r['dead_at'])}  {r['error'][:100]}"
                for r in rows
            )
            or "no dead letters"
        )
        common.emit(args, rows, text)
        return common.OK

    return common.run(args, body)


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


async def _dead_letter(redis: Redis, keys: Keys, dlq_id: str) -> DeadLetter | None:
    try:
        return await get_dead(redis, keys, dlq_id)
    except Undecodable as exc:
        raise CliError(str(exc), common.FAILED) from None


def _show(args: argparse.Namespace) -> int:
    async def body(redis: Redis, keys: Keys, settings: CommonSettings) -> int:
        found = []
        for dlq_id in args.ids:
            letter = await _dead_letter(redis, keys, dlq_id)
            if letter is None:
                raise CliError(f"no dead letter {dlq_id}", common.NOT_FOUND)
            found.append({"id": dlq_id} | msgspec.to_builtins(letter))
        common.emit(args, found, json.dumps(found, indent=2))
        return common.OK

    return common.run(args, body)


def _replay(args: argparse.Namespace) -> int:
    async def body(redis: Redis, keys: Keys, settings: CommonSettings) -> int:
        if not args.ids and not args.all:
            raise CliError("name dead-letter ids, or --all", common.USAGE)
        ids = list(args.ids)
        if args.all:
            wanted = set(keys.job_streams(args.task)) if args.task else None  # every priority
            ids += [i for i, d in await list_dead(redis, keys, count=100_000) if wanted is None or d.stream in wanted]
        store = TaskStore(redis, keys)
        replayed: list[dict[str, str | None]] = []
        missing: list[dict[str, str | None]] = []
        for dlq_id in ids:
            try:
                new_id = await store.replay_dead(dlq_id)
            except Undecodable as exc:
                raise CliError(str(exc), common.FAILED) from None
            (replayed if new_id else missing).append({"id": dlq_id, "new_entry_id": new_id})
        text = (
            "\n".join(
                [f"replayed {r['id']} -> {r['new_entry_id']}" for r in replayed]
                + [f"no dead letter {m['id']}" for m in missing]
            )
            or "nothing to replay"
        )
        common.emit(args, {"replayed": replayed, "missing": [m["id"] for m in missing]}, text)
        return common.NOT_FOUND if missing else common.OK

    return common.run(args, body)


def _purge(args: argparse.Namespace) -> int:
    async def body(redis: Redis, keys: Keys, settings: CommonSettings) -> int:
        removed = await purge(redis, keys, list(args.ids))
        common.emit(args, {"purged": removed}, f"purged {removed}")
        return common.OK if removed == len(args.ids) else common.NOT_FOUND

    return common.run(args, body)


_DLQ = {"list": _list, "show": _show, "replay": _replay, "purge": _purge}
