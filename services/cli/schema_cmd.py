"""`wan22 schema`: write the JSON Schemas of the wire contracts."""

from __future__ import annotations

import argparse
from pathlib import Path

from services import schema


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="write the JSON Schema of every stream message")
    parser.add_argument("--out", type=Path, default=schema.DEFAULT_DIR, help="directory (default docs/schema)")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    for path in schema.write(args.out):
        print(path)
    return 0
