"""HTTP byte ranges (RFC 9110 §14) for the content route: one range, so browsers can seek in a
video and download managers can resume; several ranges at once get the whole file, as allowed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.ingest.api_error import ApiError

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # inclusive
    partial: bool

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def byte_range(header: str | None, size: int) -> Span:
    whole = Span(0, size - 1, False)
    if not header or "," in header:
        return whole
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return whole  # not a byte range we understand: ignored, as a server may
    first, last = match.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise ApiError(416, f"range {header!r} is outside the {size} bytes", "Range", "range_not_satisfiable",
                       {"Content-Range": f"bytes */{size}"})  # fmt: skip
    return Span(start, end, True)
