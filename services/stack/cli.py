"""`wan22 up` (the whole stack) and `wan22 demo` (the stack, one video, stop)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import anyio

from services import logs, settings
from services.runner import run_until_signalled
from services.stack.redis_server import free_port
from services.stack.settings import HELP, DemoSettings, StackSettings, UpSettings
from services.stack.up import Stack, StackOptions

UP_DEFAULT_PORT = 8000


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser("up", help="run ingest, notifier and a generator per task (embedded Redis and Ray)")
    settings.add_arguments(up, UpSettings, HELP)
    up.set_defaults(run=_up)
    demo = subparsers.add_parser("demo", help="run the stack with the tiny demo model and make one video")
    settings.add_arguments(demo, DemoSettings, HELP)
    demo.set_defaults(run=_demo)


def stack_options(config: StackSettings, default_port: int) -> StackOptions:
    return StackOptions(
        state_dir=Path(config.state_dir),
        http_port=config.http_port or default_port,
        storage=config.storage,
        fsync=config.fsync,
        world_size=config.world_size,
        replicas=config.replicas,
        only=list(getattr(config, "task", [])),
    )


def up_options(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> StackOptions:
    return stack_options(settings.from_args(UpSettings, args, env), UP_DEFAULT_PORT)


def _up(args: argparse.Namespace) -> int:
    options = up_options(args)
    logs.configure("console", "info", service="up")

    async def main() -> None:
        stack = Stack(options)
        await stack.start()
        await run_until_signalled(stack.run, stack.stop)

    anyio.run(main)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from services.stack.demo import run_demo

    config = settings.from_args(DemoSettings, args)
    logs.configure("console", "info", service="demo")
    return anyio.run(run_demo, stack_options(config, free_port()), config.prompt)
