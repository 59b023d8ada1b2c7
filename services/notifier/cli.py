"""`wan22 notifier` (run the service) and `wan22 webhooks …` (subscriptions, secret, dead letters).

Exit codes are those of every `wan22` command (`services.cli.common`): 0 done, 1 failed, 2 bad
arguments or settings, 4 something named does not exist, 5 Redis unreachable. `--json` prints
machine-readable output on stdout.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec

from services import eventloop
from services.cli.common import FAILED, NOT_FOUND, USAGE, reaching_redis
from services.cli.errors import CliError
from services.consumer import Undecodable
from services.egress import EgressRefused, check_literal_host
from services.keys import Keys
from services.notifier import dlq, subscriptions
from services.notifier.payload import parse_events
from services.notifier.settings import NotifierSettings
from services.notifier.signing import parse_secret
from services.redisconn import connect
from services.settings import add_arguments, from_args, load


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("notifier", help="deliver lifecycle events to webhooks")
    add_arguments(run, NotifierSettings)
    run.set_defaults(run=_run_service)
    _register_webhooks(subparsers)


def _run_service(args: argparse.Namespace) -> int:
    from services.notifier.main import serve  # keeps `wan22 --help` light

    eventloop.run(serve, from_args(NotifierSettings, args))  # uvloop: the webhook path is loop-bound
    return 0


def _register_webhooks(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("webhooks", help="manage webhook subscriptions and dead letters")
    parser.add_argument("--redis-url", default=None, help="(env WAN22_REDIS_URL)")
    parser.add_argument("--prefix", default=None, help="(env WAN22_PREFIX)")
    commands = parser.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")

    add = commands.add_parser("add", help="subscribe URL to events; prints the id (and a generated secret once)")
    add.add_argument("url")
    add.add_argument("--events", default=None, help="comma-separated (default started and the terminal ones; 'all')")
    add.add_argument("--secret", default=None, help="whsec_… signing secret (default: generated)")
    add.add_argument("--json", action="store_true")
    add.set_defaults(run=_cmd(_add))

    listing = commands.add_parser("list", help="list subscriptions (secrets are not shown)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_cmd(_list))

    remove = commands.add_parser("remove", help="delete a subscription")
    remove.add_argument("id")
    remove.set_defaults(run=_cmd(_remove))

    rotate = commands.add_parser("rotate", help="add a new secret (old ones keep signing until --drop-old)")
    rotate.add_argument("id")
    rotate.add_argument("--secret", default=None)
    rotate.add_argument("--drop-old", action="store_true", help="keep only the newest secret")
    rotate.set_defaults(run=_cmd(_rotate))

    enable = commands.add_parser("enable", help="re-enable a subscription disabled by a 410 Gone")
    enable.add_argument("id")
    enable.set_defaults(run=_cmd(_enable))

    secret = commands.add_parser("secret", help="print the secret that signs deliveries to tasks' webhook_url")
    secret.set_defaults(run=_cmd(_secret))

    _register_dlq(commands)


def _register_dlq(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("dlq", help="dead-lettered deliveries")
    dlq_commands = parser.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    listing = dlq_commands.add_parser("list", help="list dead-lettered deliveries with their attempts")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_cmd(_dlq_list))
    replay = dlq_commands.add_parser("replay", help="deliver again (same webhook-id, fresh schedule)")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--all", action="store_true")
    replay.set_defaults(run=_cmd(_dlq_replay))


Command = Callable[[Any, Keys, NotifierSettings, argparse.Namespace], Awaitable[int]]


def _cmd(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = load(NotifierSettings, redis_url=args.redis_url, prefix=args.prefix)
        with reaching_redis(settings.redis_url):
            return anyio.run(_with_redis, command, settings, args)

    return run


async def _with_redis(command: Command, settings: NotifierSettings, args: argparse.Namespace) -> int:
    redis = connect(settings.redis_url, max_connections=4)
    try:
        return await command(redis, Keys(settings.prefix), settings, args)
    finally:
        await redis.aclose()


async def _add(redis: Any, keys: Keys, settings: NotifierSettings, args: argparse.Namespace) -> int:
    try:
        check_literal_host(args.url, settings.allow_networks)
        events = parse_events(args.events) if args.events is not None else None
        if args.secret is not None:
            parse_secret(args.secret)
    except (EgressRefused, ValueError) as exc:
        raise CliError(str(exc), USAGE) from None
    sub = await subscriptions.add(redis, keys, args.url, events, args.secret)
    shown = None if args.secret else sub.secrets[0]
    if args.json:
        print(json.dumps({"id": sub.id, "url": sub.url, "events": sub.events, "secret": shown}))
    else:
        print(sub.id)
        if shown:
            print(f"secret: {shown}  (shown once; keep it to verify signatures)")
    return 0


async def _list(redis: Any, keys: Keys, settings: NotifierSettings, args: argparse.Namespace) -> int:
    subs = await subscriptions.all_subscriptions(redis, keys)
    rows: list[dict[str, Any]] = [
        {
            "id": s.id,
            "url": s.url,
            "events": s.events,
            "secrets": len(s.secrets),
            "enabled": s.enabled,
            "disabled_reason": s.disabled_reason,
            "created_at": s.created_at,
        }
        for s in subs
    ]
    if args.json:
        print(json.dumps(rows))
    for row in [] if args.json else rows:
        state = "enabled" if row["enabled"] else f"disabled ({row['disabled_reason']})"
        print(f"{row['id']}  {row['url']}  events={','.join(row['events'])}  {state}")
    return 0


async def _remove(redis: Any, keys: Keys, settings: NotifierSettings, args: argparse.Namespace) -> int:
    if not await subscriptions.remove(redis, keys, args.id):
        raise CliError(f"no subscription {args.id}", NOT_FOUND)
    print(f"removed {args.id}")
    return 0


async def _rotate(redis: Any, keys: Keys, settings: NotifierSettings, args: argparse.Namespace) -> int:
    if args.secret is not None:
        try:
            parse_secret(args.secret)
        except ValueError as exc:
            raise CliError(str(exc), USAGE) from None
    sub = await subscriptions.rotate(redis, keys, args.id, args.secret, drop_old=args.drop_old)
    if sub is None:
        raise CliError(f"no subscription {args.id}", NOT_FOUND)
    if not args.secret and not args.drop_old:
        print(f"secret: {sub.secrets[0]}  (shown once)")
    print(f"{sub.id} signs with {len(sub.secrets)} secret(s)")
    return 0


async def _enable(redis: Any, keys: Keys, settings: NotifierSettings, args: argparse.Namespace) -> int:
    if await subscriptions.enable(redis, keys, args.id) is None:
        raise CliError(f"no subscription {args.id}", NOT_FOUND)
    print(f"enabled {args.id}")
    return 0


async def _secret(redis: Any, keys: Keys, settings: NotifierSettings, args: argparse.Namespace) -> int:
    print(" ".join(await subscriptions.deployment_secrets(redis, keys, settings.secrets)))
    return 0


async def _dlq_list(redis: Any, keys: Keys, settings: NotifierSettings, args: argparse.Namespace) -> int:
    letters = await dlq.list_dead(redis, keys, count=10_000)
    if args.json:
        print(json.dumps([{"dlq_id": i, **msgspec.to_builtins(letter)} for i, letter in letters]))
        return 0
    for dlq_id, letter in letters:
        d, last = letter.delivery, letter.attempts[-1] if letter.attempts else None
        when = datetime.fromtimestamp(letter.dead_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(
            f"{dlq_id}  {when}  {d.event}  task={d.task_id}  {d.url}  {letter.reason}  "
            f"attempts={len(letter.attempts)}  last={last.error if last else '-'}"
        )
    return 0


async def _dlq_replay(redis: Any, keys: Keys, settings: NotifierSettings, args: argparse.Namespace) -> int:
    if args.all == bool(args.ids):
        raise CliError("give dead-letter ids or --all", USAGE)
    if args.all:
        replayed = await dlq.replay_all(redis, keys)
        print(f"replayed {len(replayed)}")
        return 0
    missing = []
    for dlq_id in args.ids:
        try:
            delivery = await dlq.replay(redis, keys, dlq_id)
        except Undecodable as exc:
            raise CliError(str(exc), FAILED) from None
        if delivery is None:
            missing.append(dlq_id)
        else:
            print(f"replayed {dlq_id} as {delivery}")
    if missing:
        raise CliError(f"not in the dead-letter stream: {' '.join(missing)}", NOT_FOUND)
    return 0
