"""`wan22 up` (the whole stack) and `wan22 demo` (the stack, one video, stop)."""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from services import logs
from services.runner import run_until_signalled
from services.stack.defaults import STATE_DIR
from services.stack.redis_server import free_port
from services.stack.up import Stack, StackOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser("up", help="run ingest, notifier and a generator per task (embedded Redis and Ray)")
    _options(up)
    up.add_argument("--task", action="append", default=[], help="only these tasks' generators (repeatable)")
    up.set_defaults(run=_up)
    demo = subparsers.add_parser("demo", help="run the stack with the tiny demo model and make one video")
    _options(demo)
    demo.add_argument("--prompt", default="a red fox running through fresh snow, cinematic")
    demo.set_defaults(run=_demo)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="embedded Redis data and demo model")
    parser.add_argument("--http-port", type=int, default=None, help="ingest port (up: 8000; demo: a free one)")
    parser.add_argument("--storage", default="./outputs", help="videos directory or s3://bucket/prefix")
    parser.add_argument(
        "--fsync",
        choices=["everysec", "always"],
        default="everysec",
        help="embedded Redis appendfsync (always: no acknowledged write lost on a crash)",
    )
    parser.add_argument("--world-size", type=int, default=1, help="ranks of the demo task's gang")
    parser.add_argument("--replicas", type=int, default=1, help="generators (gangs) per task")


def _stack_options(args: argparse.Namespace, default_port: int) -> StackOptions:
    return StackOptions(
        state_dir=args.state_dir,
        http_port=args.http_port or default_port,
        storage=args.storage,
        fsync=args.fsync,
        world_size=args.world_size,
        replicas=args.replicas,
    )


def _up(args: argparse.Namespace) -> int:
    logs.configure("console", "info", service="up")
    options = _stack_options(args, 8000)
    options.only = args.task

    async def main() -> None:
        stack = Stack(options)
        await stack.start()
        await run_until_signalled(stack.run, stack.stop)

    anyio.run(main)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from services.stack.demo import run_demo

    logs.configure("console", "info", service="demo")
    return anyio.run(run_demo, _stack_options(args, free_port()), args.prompt)
