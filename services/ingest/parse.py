"""Raw requests → `GenerateRequest`: a JSON body, a stream entry with one `payload` field, or a
stream entry with flat string fields as go-redis writes a map."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from services.contracts import GenerateRequest, request_decoder
from services.ingest.invalid import Invalid

_FIELD_RE = re.compile(r"`\$\.?([A-Za-z0-9_]*)")
_JSON_FIELDS = {"metadata"}  # flat fields that hold JSON objects
_RESERVED = {"type"}  # the common entry layout's own fields, not part of a request
_json = msgspec.json.Decoder()


def from_json(body: bytes) -> GenerateRequest:
    try:
        return request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise invalid_from(exc) from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"body is not valid JSON: {exc}", None, "malformed") from None


def from_fields(fields: dict[str, str]) -> GenerateRequest:
    """A stream entry: `payload` JSON wins; otherwise flat string fields converted leniently
    ("42" → 42) with the same validation as JSON."""
    fields = {k: v for k, v in fields.items() if not k.startswith("_") and k not in _RESERVED}
    if "payload" in fields:
        return from_json(fields["payload"].encode())
    return from_mapping({k: _flat_value(k, v) for k, v in fields.items()})


def from_mapping(values: dict[str, Any]) -> GenerateRequest:
    try:
        return msgspec.convert(values, GenerateRequest, strict=False)
    except msgspec.ValidationError as exc:
        raise invalid_from(exc) from None


def _flat_value(name: str, value: str) -> Any:
    if name in _JSON_FIELDS:
        try:
            return _json.decode(value)
        except msgspec.DecodeError:
            raise Invalid(f"{name} must be a JSON object", name) from None
    if name == "guide_scale" and ("," in value or value.startswith("[")):
        return [part for part in value.strip("[]").replace(" ", "").split(",") if part]
    return value


def invalid_from(exc: msgspec.ValidationError) -> Invalid:
    """msgspec says e.g. "Expected `int`, got `str` - at `$.seed`"; keep the reason, name the field."""
    text = str(exc)
    reason, _, where = text.partition(" - at ")
    match = _FIELD_RE.search(where)
    field = match.group(1) if match and match.group(1) else None
    if field is None and text.startswith("Object contains unknown field"):
        field = text.split("`")[1]
        return Invalid(f"unknown field {field!r}", field)
    if field is None and "missing required field" in text:
        field = text.split("`")[1]
        return Invalid(f"{field} is required", field)
    return Invalid(f"{field}: {reason}" if field else reason, field)
