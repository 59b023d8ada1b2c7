"""JSON Schema of every wire contract, committed under docs/schema/ for the Go side."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec

from services.contracts import SCHEMA_TYPES

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "docs" / "schema"
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def render() -> dict[str, str]:
    """File name → schema text, deterministic (sorted keys, trailing newline)."""
    return {
        f"{name}.json": json.dumps(_normalised(msgspec.json.schema(kind)), indent=2, sort_keys=True) + "\n"
        for name, kind in SCHEMA_TYPES.items()
    }


def normalise_description(text: str) -> str:
    """A docstring as paragraphs of single-spaced words. msgspec releases differ in how they
    dedent docstrings; the committed schemas must not change with the installed version."""
    paragraphs = (" ".join(part.split()) for part in _PARAGRAPH_BREAK.split(text))
    return "\n\n".join(p for p in paragraphs if p)


def _normalised(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: normalise_description(value) if key == "description" and isinstance(value, str) else _normalised(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_normalised(item) for item in node]
    return node


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
