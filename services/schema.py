"""JSON Schema of every wire contract, committed under docs/schema/ for the Go side."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from services.contracts import SCHEMA_TYPES

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "docs" / "schema"


def render() -> dict[str, str]:
    """File name → schema text, deterministic (sorted keys, trailing newline)."""
    return {
        f"{name}.json": json.dumps(msgspec.json.schema(kind), indent=2, sort_keys=True) + "\n"
        for name, kind in SCHEMA_TYPES.items()
    }


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
