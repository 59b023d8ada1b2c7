"""The body of `POST /v1/videos` as plain values: JSON, or `multipart/form-data` as the openai
SDK sends it (every value a string, nested values in bracket notation: `metadata[key]`,
`loras[][name]`, `guidance_scale[]`), or urlencoded. An uploaded `input_reference` becomes a
`data:` URL, which the normal image checks then take like any other."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

from services.ingest.api_error import ApiError
from services.inputs import IMAGE_MAGIC

_json = msgspec.json.Decoder()
_KEY = re.compile(r"^([A-Za-z0-9_]+)((?:\[[A-Za-z0-9_]*\])*)$")
_JSON_VALUED = {"metadata", "loras", "extra_body", "guidance_scale", "input_reference"}
MAX_FIELDS = 200


async def read_values(request: Request, max_body: int, max_image: int) -> dict[str, Any]:
    """The request's fields, `extra_body` merged in (as SGLang's form takes it)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    stream = _limited(request, max_body)
    if kind == "multipart/form-data":
        values = await _form(MultiPartParser(request.headers, stream, max_files=1, max_fields=MAX_FIELDS), max_image)
    elif kind == "application/x-www-form-urlencoded":
        values = await _form(FormParser(request.headers, stream), max_image)
    elif kind in ("application/json", ""):
        values = _json_object(b"".join([chunk async for chunk in stream]))
    else:
        message = "content-type must be application/json or multipart/form-data"
        raise ApiError(415, message, "Content-Type", "unsupported_media_type")
    extra = values.pop("extra_body", None)
    if isinstance(extra, dict):
        values = values | extra
    elif extra is not None:
        raise ApiError(400, "extra_body must be a JSON object", "extra_body", "invalid")
    return values


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body is larger than {limit} bytes", None, "too_large")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is larger than {limit} bytes", None, "too_large")
        yield chunk


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = _json.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", None, "malformed") from None
    if not isinstance(value, dict):
        raise ApiError(400, "body must be a JSON object", None, "malformed")
    return value


async def _form(parser: MultiPartParser | FormParser, max_image: int) -> dict[str, Any]:
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, f"malformed form body: {exc.message}", None, "malformed") from None
    values: dict[str, Any] = {}
    try:
        for key, item in form.multi_items():
            value = await _upload(key, item, max_image) if isinstance(item, UploadFile) else item
            _place(values, key, value)
    finally:
        await form.close()
    return {name: _maybe_json(name, value) for name, value in values.items()}


async def _upload(key: str, upload: UploadFile, max_image: int) -> str:
    """An uploaded image as a `data:` URL, refused here when it is no image or too large."""
    if key != "input_reference":
        raise ApiError(400, f"{key}: only input_reference may be a file", key, "invalid")
    data = await upload.read(max_image + 1)
    if len(data) > max_image:
        raise ApiError(413, f"input_reference is larger than {max_image} bytes", "input_reference", "too_large")
    if not data.startswith(IMAGE_MAGIC):
        raise ApiError(400, "input_reference must be a PNG, JPEG, WebP or GIF image", "input_reference", "invalid")
    media = upload.content_type if (upload.content_type or "").startswith("image/") else _sniff(data)
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def _sniff(data: bytes) -> str:
    kinds = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"RIFF": "image/webp", b"GIF8": "image/gif"}
    return next(media for magic, media in kinds.items() if data.startswith(magic))


def _place(values: dict[str, Any], key: str, value: Any) -> None:
    """`a` → a; `a[b]` → {b: ..}; `a[]` → a list; `a[][b]` → a list of objects, a new object
    whenever `b` repeats (how the SDK flattens `[{"name": ..}, {"name": ..}]`)."""
    match = _KEY.match(key)
    if not match:
        raise ApiError(400, f"form field name {key!r} is not a field or field[key]", key, "invalid")
    name, path = match.group(1), re.findall(r"\[([A-Za-z0-9_]*)\]", match.group(2))
    if not path:
        values[name] = value
    elif path == [""]:
        values.setdefault(name, []).append(value)
    elif len(path) == 1:
        values.setdefault(name, {})[path[0]] = value
    elif path[0] == "" and len(path) == 2 and path[1]:
        items = values.setdefault(name, [])
        if not items or path[1] in items[-1]:
            items.append({})
        items[-1][path[1]] = value
    else:
        raise ApiError(400, f"form field {key!r} nests deeper than the request has fields", name, "invalid")


def _maybe_json(name: str, value: Any) -> Any:
    """Structured fields may also come as one JSON string (`-F 'loras=[{"name": ..}]'`)."""
    if name in _JSON_VALUED and isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return _json.decode(value)
        except msgspec.DecodeError:
            raise ApiError(400, f"{name} is not valid JSON", name, "invalid") from None
    return value
