"""The HTTP API's error: a status and a JSON body naming the field and the reason."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        field: str | None = None,
        reason: str = "invalid",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status, self.headers = status, headers or {}
        self.body = {"error": error, "field": field, "reason": reason}


def redis_down() -> ApiError:
    return ApiError(503, "the queue (Redis) is unavailable; retry shortly", None, "unavailable", {"Retry-After": "2"})


def not_replicated(why: str) -> ApiError:
    """Accepted by the primary, but not confirmed on enough replicas to survive a failover."""
    message = f"the request was not confirmed on enough Redis replicas ({why}); retry it with the same Idempotency-Key"
    return ApiError(503, message, None, "unavailable", {"Retry-After": "1"})
