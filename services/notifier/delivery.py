"""One delivery attempt: check the target, sign, POST, classify the answer."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from services.contracts import now
from services.egress import EgressRefused
from services.notifier.clients import ClientPool
from services.notifier.pinned import Reply
from services.notifier.schedule import parse_retry_after
from services.notifier.signing import sign_headers
from services.notifier.store import Attempt, Delivery

ERROR_SNIPPET = 200


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
    """One attempt within `timeout` seconds, resolution included."""
    at, started = now(), time.perf_counter()
    body = delivery.body.encode()
    headers = sign_headers(delivery.id, int(time.time()), body, secrets)
    headers["content-type"] = "application/json"
    try:
        session = await pool.session(delivery.url)
        left = max(0.001, timeout - (time.perf_counter() - started))  # 0 would mean no limit to aiohttp
        reply = await session.post(delivery.url, body, headers, left)
    except TimeoutError:
        return _failed(at, started, f"timed out after {timeout:g} s")
    except (EgressRefused, aiohttp.InvalidURL) as exc:  # aiohttp refuses odd IP literals (127.1)
        return Result(Attempt(at=at, error=f"refused: {getattr(exc, 'reason', exc)}"), refused=True)
    except aiohttp.ClientError as exc:  # before OSError: aiohttp's connection errors are OSErrors too
        return _failed(at, started, f"{type(exc).__name__}: {exc}".rstrip(": "))
    except OSError as exc:
        return _failed(at, started, f"resolve failed: {exc}")
    return _classify(reply, Attempt(at=at, status=reply.status, seconds=time.perf_counter() - started))


def _failed(at: float, started: float, error: str) -> Result:
    return Result(Attempt(at=at, error=error, seconds=time.perf_counter() - started))


def _classify(reply: Reply, attempt: Attempt) -> Result:
    status = reply.status
    if 200 <= status < 300:
        return Result(attempt)
    error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    if text := reply.text.strip():
        error += ": " + text[:ERROR_SNIPPET]
    attempt.error = error
    return Result(attempt, retry_after=parse_retry_after(reply.retry_after, now()))
