"""Stream reads as Redis sends them, decoded one entry at a time.

Redis Streams are binary-safe: a producer may write any bytes in field names and values, repeat a
name, or write a million fields. redis-py decodes a whole reply at once (one byte that is not
UTF-8 fails every entry of the read, and the same entry fails every reclaim after it) and folds
field lists into dicts (a repeated name is lost). These commands read the reply undecoded and
build each `Entry` on its own: clean entries as before, a defective one marked with what is wrong
and its exact bytes kept, so its handler can reject it and the dead-letter queue can preserve it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from services.consumer.entry import Defect, Entry, RawPairs


async def raw_command(redis: Redis, *args: Any) -> Any:
    """One command's reply without decoding or redis-py's response callbacks."""
    pool = redis.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.send_command(*args)
        # read_response drops the connection itself when cancelled or failed mid-reply.
        return await connection.read_response(disable_decoding=True)
    finally:
        await pool.release(connection)


async def run_script(redis: Redis, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    """A registered script's reply, undecoded (EVALSHA; EVAL when the server has not seen it)."""
    try:
        return await raw_command(redis, "EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await raw_command(redis, "EVAL", script.script, len(keys), *keys, *args)


def text(value: bytes | str | int) -> str:
    """Ids, cursors and stream names: Redis makes ids; names are ours."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def decode_fields(flat: list[bytes]) -> tuple[dict[str, str], Defect | None]:
    """Field dict (undecodable bytes replaced, the last of a repeated name wins) and the first
    defect found, naming the field."""
    fields: dict[str, str] = {}
    defect: Defect | None = None
    for raw_name, raw_value in zip(flat[::2], flat[1::2], strict=True):
        name, name_ok = _utf8(raw_name)
        value, value_ok = _utf8(raw_value)
        if defect is None:
            if not name_ok:
                defect = Defect(f"field name {name!r} is not UTF-8 text", name, "bad_encoding")
            elif not value_ok:
                defect = Defect(f"{name}: value is not UTF-8 text", name, "bad_encoding")
            elif name in fields:
                defect = Defect(f"field {name!r} appears more than once", name, "duplicate_field")
        fields[name] = value
    return fields, defect


def to_entry(stream: str, entry_id: bytes | str, flat: list[bytes]) -> Entry:
    fields, defect = decode_fields(flat)
    raw: RawPairs | None = list(zip(flat[::2], flat[1::2], strict=True)) if defect else None
    return Entry(stream, text(entry_id), fields, defect=defect, raw=raw)


def entries_of(stream: str, rows: list[Any] | None) -> list[Entry]:
    """Rows of one stream ([id, [name, value, ...]]); rows of deleted entries (nil fields) are skipped."""
    return [to_entry(stream, row[0], row[1]) for row in rows or () if row is not None and row[1] is not None]


def _read_reply(reply: dict[bytes, Any] | list[Any] | None) -> list[Entry]:
    """XREAD/XREADGROUP: a map of stream to rows (RESP3) or a list of [stream, rows] (RESP2)."""
    entries: list[Entry] = []
    for stream, rows in reply.items() if isinstance(reply, dict) else reply or ():
        entries += entries_of(text(stream), rows)
    return entries


async def xreadgroup(
    redis: Redis, group: str, consumer: str, streams: Mapping[str, str], count: int, block_ms: int | None
) -> list[Entry]:
    args: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
    if block_ms is not None:
        args += ["BLOCK", block_ms]
    return _read_reply(await raw_command(redis, *args, "STREAMS", *streams.keys(), *streams.values()))


async def xread(redis: Redis, streams: Mapping[str, str], count: int, block_ms: int | None = None) -> list[Entry]:
    args: list[Any] = ["XREAD", "COUNT", count]
    if block_ms is not None:
        args += ["BLOCK", block_ms]
    return _read_reply(await raw_command(redis, *args, "STREAMS", *streams.keys(), *streams.values()))


async def xautoclaim(
    redis: Redis, stream: str, group: str, consumer: str, min_idle_ms: int, start: str, count: int
) -> tuple[str, list[Entry]]:
    """The next cursor and the claimed entries (Redis drops deleted ones from the pending list)."""
    reply = await raw_command(redis, "XAUTOCLAIM", stream, group, consumer, min_idle_ms, start, "COUNT", count)
    return text(reply[0]), entries_of(stream, reply[1])


async def xrange(redis: Redis, stream: str, start: str = "-", end: str = "+", count: int | None = None) -> list[Entry]:
    args: list[Any] = ["XRANGE", stream, start, end] + (["COUNT", count] if count else [])
    return entries_of(stream, await raw_command(redis, *args))


async def xrevrange(
    redis: Redis, stream: str, end: str = "+", start: str = "-", count: int | None = None
) -> list[Entry]:
    args: list[Any] = ["XREVRANGE", stream, end, start] + (["COUNT", count] if count else [])
    return entries_of(stream, await raw_command(redis, *args))


async def stream_length_and_last_id(redis: Redis, stream: str) -> tuple[int, str]:
    """XINFO STREAM's length and last generated id (its reply also holds the first and last
    entries, whatever bytes they hold); ResponseError when the stream does not exist."""
    reply = await raw_command(redis, "XINFO", "STREAM", stream)
    info = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    return int(info[b"length"]), text(info[b"last-generated-id"])


def text_rows(entries: list[Entry]) -> list[tuple[str, dict[str, str]]]:
    """(id, fields) of the entries that are plain text, as redis-py returns rows: for readers that
    only show what the services wrote and skip whatever else someone put on a stream."""
    return [(entry.id, entry.fields) for entry in entries if entry.defect is None]


def _utf8(value: bytes) -> tuple[str, bool]:
    try:
        return value.decode(), True
    except UnicodeDecodeError:
        return value.decode(errors="replace"), False
