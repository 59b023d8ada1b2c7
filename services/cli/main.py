"""The `wan22` console command. Each subcommand lives in its own module with a `register`
function; none imports torch or ray at import time."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from services.cli.errors import CliError
from services.settings import SettingsError

# Modules that add subcommands, in help order.
COMMAND_MODULES = (
    "services.ingest.cli",
    "services.generator.cli",
    "services.notifier.cli",
    "services.cli.tasks_cmd",
    "services.cli.ops_cmd",
    "services.stack.cli",
    "services.cli.schema_cmd",
    "wan.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wan22", description="Serve Wan2.2 video generation.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part is not built into this install
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int | None] = args.run
    try:
        return int(run(args) or 0)
    except (SettingsError, CliError) as exc:
        print(f"wan22 {args.command}: {exc}", file=sys.stderr)
        return getattr(exc, "code", 2)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
