"""`wan22 schema`: write the JSON Schemas of the wire contracts (and with --go the Go types)."""

from __future__ import annotations

import argparse
from pathlib import Path

from services import gogen, schema


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="write the JSON Schema of every stream message")
    parser.add_argument("--out", type=Path, default=schema.DEFAULT_DIR, help="directory (default docs/schema)")
    parser.add_argument(
        "--go", action="store_true", help="also write the Go types generated from them (clients/go/wan22)"
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    for path in schema.write(args.out):
        print(path)
    if args.go:
        print(gogen.write(directory=args.out))
    return 0
