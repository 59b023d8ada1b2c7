"""Bearer-token authorization shared by every HTTP route of ingest (API, /v1/videos, dashboard)."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from services.ingest.api_error import ApiError


class BearerAuth:
    """Tokens compared in constant time; no tokens configured = open. Browsers cannot put a
    header on EventSource or <video>, so the dashboard may send `?access_token=`."""

    def __init__(self, tokens: frozenset[str]) -> None:
        self.tokens = tokens

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def __call__(self, request: HTTPConnection) -> None:
        if not self.tokens:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header and request.query_params.get("access_token"):
            scheme, token = "bearer", request.query_params["access_token"]
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing bearer token", "Authorization", "unauthorized", {"WWW-Authenticate": "Bearer"})
        if not any(hmac.compare_digest(token.encode(), known.encode()) for known in self.tokens):
            raise ApiError(403, "token not accepted", "Authorization", "forbidden")
