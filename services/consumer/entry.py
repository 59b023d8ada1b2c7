"""One stream entry as a handler sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from services.consumer.errors import Undecodable
from services.contracts import ErrorRecord

T = TypeVar("T")
RawPairs = list[tuple[bytes, bytes]]

META_PREFIX = "_"  # fields the consumer adds (replay history); message decoders ignore them


@dataclass(frozen=True, slots=True)
class Defect:
    """Why an entry's fields are not a message at all, whatever its type: `reason` is
    `bad_encoding` (bytes that are not UTF-8) or `duplicate_field`."""

    message: str
    field: str
    reason: str


@dataclass(slots=True)
class Entry:
    stream: str
    id: str
    fields: dict[str, str]  # undecodable bytes replaced; `raw` has the exact ones
    deliveries: int = 1
    history: list[ErrorRecord] = field(default_factory=list)
    defect: Defect | None = None
    raw: RawPairs | None = None  # every (name, value) as written, kept only for a defective entry

    @property
    def attempt(self) -> int:
        """1-based: every earlier failed or abandoned delivery counts."""
        return 1 + sum(1 for record in self.history if record.kind != "handed_back")

    @property
    def task_id(self) -> str:
        return self.fields.get("task_id", "")

    @property
    def message_fields(self) -> dict[str, str]:
        return {k: v for k, v in self.fields.items() if not k.startswith(META_PREFIX)}

    def decode(self, decoder: msgspec.json.Decoder[T]) -> T:
        """The `payload` field through `decoder`; raises Undecodable naming what is wrong."""
        if self.defect is not None:
            raise Undecodable(self.defect.message)
        payload = self.fields.get("payload")
        if payload is None:
            raise Undecodable("entry has no `payload` field")
        try:
            return decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Undecodable(f"payload: {exc}") from exc

    def decode_or_none(self, decoder: msgspec.json.Decoder[T]) -> T | None:
        """`decode`, for readers that skip what is not a message of theirs."""
        try:
            return self.decode(decoder)
        except Undecodable:
            return None
