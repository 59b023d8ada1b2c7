"""The one error type of ingest validation: names the field and the reason."""

from __future__ import annotations


class Invalid(ValueError):
    """`reason` is a short machine-readable code (`invalid`, `too_large`, `queue_full`, ...)."""

    def __init__(self, message: str, field: str | None = None, reason: str = "invalid") -> None:
        super().__init__(message)
        self.message, self.field, self.reason = message, field, reason

    def body(self) -> dict[str, str | None]:
        return {"error": self.message, "field": self.field, "reason": self.reason}
