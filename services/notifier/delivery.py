"""One delivery attempt: check the target, sign, POST, classify the answer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import anyio
import httpx

from services.contracts import now
from services.egress import EgressRefused
from services.notifier.clients import ClientPool
from services.notifier.schedule import parse_retry_after
from services.notifier.signing import sign_headers
from services.notifier.store import Attempt, Delivery

READ_LIMIT = 64 * 1024  # read at most this much of a response (keeps the connection reusable)
ERROR_SNIPPET = 200
USER_AGENT = "wan22-notifier/1"


@dataclass(slots=True)
class Result:
    attempt: Attempt
    retry_after: float | None = None
    refused: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.attempt.status < 300

    @property
    def gone(self) -> bool:
        return self.attempt.status == 410


async def attempt(pool: ClientPool, delivery: Delivery, secrets: list[str], timeout: float) -> Result:
    at, started = now(), time.perf_counter()
    body = delivery.body.encode()
    headers = sign_headers(delivery.id, int(time.time()), body, secrets)
    headers.update({"content-type": "application/json", "user-agent": USER_AGENT})
    try:
        # httpx's timeouts apply per phase; this bounds resolution and the whole exchange.
        with anyio.fail_after(timeout):
            async with pool.client(delivery.url) as client:
                result = await _post(client, parsed_url(delivery.url), body, headers)
    except TimeoutError:
        result = Result(Attempt(at=at, error=f"timed out after {timeout:g} s"))
    except EgressRefused as exc:
        return Result(Attempt(at=at, error=f"refused: {exc.reason}"), refused=True)
    except OSError as exc:
        return Result(Attempt(at=at, error=f"resolve failed: {exc}", seconds=time.perf_counter() - started))
    result.attempt.at, result.attempt.seconds = at, time.perf_counter() - started
    return result


@lru_cache(maxsize=4096)
def parsed_url(url: str) -> httpx.URL:
    return httpx.URL(url)  # parsed once per URL: httpx's parser costs as much as the rest of a request


async def _post(client: httpx.AsyncClient, url: httpx.URL, body: bytes, headers: dict[str, str]) -> Result:
    try:
        async with client.stream("POST", url, content=body, headers=headers) as response:
            text = await _read_some(response)
    except EgressRefused as exc:
        return Result(Attempt(at=0, error=f"refused: {exc.reason}"), refused=True)
    except httpx.HTTPError as exc:
        return Result(Attempt(at=0, error=f"{type(exc).__name__}: {exc}".rstrip(": ")))
    status = response.status_code
    if 200 <= status < 300:
        return Result(Attempt(at=0, status=status))
    error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    if text.strip():
        error += ": " + text.strip()[:ERROR_SNIPPET]
    return Result(
        Attempt(at=0, status=status, error=error),
        retry_after=parse_retry_after(response.headers.get("retry-after"), now()),
    )


async def _read_some(response: httpx.Response) -> str:
    """Up to READ_LIMIT bytes of the body; a larger body closes the connection instead."""
    chunks, size = [], 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= READ_LIMIT:
            break
    return b"".join(chunks)[: ERROR_SNIPPET * 4].decode("utf-8", "replace")
