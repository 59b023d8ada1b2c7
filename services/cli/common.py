"""What every operator command shares: connection flags, one Redis client, exit codes, output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.cli.errors import CliError
from services.keys import Keys
from services.redisconn import connect
from services.settings import CommonSettings, load

# Exit codes scripts can rely on.
OK, FAILED, USAGE, REJECTED, NOT_FOUND, UNAVAILABLE = 0, 1, 2, 3, 4, 5


def add_connection(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    parser.add_argument("--redis-url", default=None, help="(env WAN22_REDIS_URL)")
    parser.add_argument("--prefix", default=None, help="(env WAN22_PREFIX)")
    parser.add_argument("--models", default=None, help="(env WAN22_MODELS)")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def settings_of(args: argparse.Namespace) -> CommonSettings:
    return load(CommonSettings, redis_url=args.redis_url, prefix=args.prefix, models=getattr(args, "models", None))


def run(args: argparse.Namespace, body: Callable[[Redis, Keys, CommonSettings], Awaitable[int]]) -> int:
    """Run `body` with a client it does not own; Redis being down is one line and exit code 5."""
    settings = settings_of(args)

    async def main() -> int:
        redis = connect(settings.redis_url)
        try:
            return await body(redis, Keys(settings.prefix), settings)
        finally:
            await redis.aclose()

    with reaching_redis(settings.redis_url):
        return anyio.run(main)


@contextmanager
def reaching_redis(url: str) -> Iterator[None]:
    """Redis down or unreachable is one line and exit code 5, not a traceback."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise CliError(f"cannot reach Redis at {url}: {exc}", UNAVAILABLE) from None


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(msgspec.to_builtins(data), indent=2, default=str))
    else:
        print(text)


def progress_bar(percent: float, width: int = 30, label: str = "") -> None:
    """A one-line bar on stderr, redrawn in place (stdout stays clean for the task id)."""
    filled = int(width * min(100.0, max(0.0, percent)) / 100)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {percent:5.1f}% {label}".ljust(width + 40))
    sys.stderr.flush()
