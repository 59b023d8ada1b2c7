"""The HTTP door (starlette): POST /generate, task state, SSE progress, cancel, health, metrics."""

from __future__ import annotations

from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from services.ingest.api_error import ApiError, redis_down
from services.ingest.auth import BearerAuth
from services.ingest.door import Door
from services.ingest.generate import GenerateEndpoint, GenerateFirst
from services.ingest.openapi import openapi_document
from services.ingest.sse import task_events
from services.keys import Keys
from services.queueinfo import QueueEstimator

_json = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(body), status, headers, media_type="application/json")


class Api:
    def __init__(
        self, redis: Redis, keys: Keys, door: Door, tokens: frozenset[str], max_body: int, lease_ms: int = 30_000
    ) -> None:
        self.redis, self.keys, self.door, self.max_body = redis, keys, door, max_body
        self.auth = BearerAuth(tokens)
        self.queue = QueueEstimator(redis, keys, lease_ms)
        self.generate = GenerateEndpoint(door, self.auth, max_body)

    def routes(self) -> list[Route]:
        return [
            Route("/generate", self.generate, methods=["POST"]),
            Route("/tasks/{task_id}", self.get_task, methods=["GET"]),
            Route("/tasks/{task_id}", self.cancel_task, methods=["DELETE"]),
            Route("/tasks/{task_id}/events", self.task_events, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
        ]

    def authorize(self, request: Request) -> None:
        self.auth(request)

    async def get_task(self, request: Request) -> Response:
        self.authorize(request)
        state = await self.door.tasks.get(request.path_params["task_id"])
        if state is None:
            raise ApiError(404, "no such task", "task_id", "not_found")
        state.queue = await self.queue(state)
        return json_response(state)

    async def cancel_task(self, request: Request) -> Response:
        self.authorize(request)
        task_id = request.path_params["task_id"]
        outcome = await self.door.tasks.cancel(task_id)
        if outcome == "missing":
            raise ApiError(404, "no such task", "task_id", "not_found")
        if outcome not in ("cancelled", "cancelling"):
            raise ApiError(409, f"task is already {outcome.removeprefix('already_')}", "task_id", "terminal")
        return json_response({"task_id": task_id, "status": outcome}, 202 if outcome == "cancelling" else 200)

    async def task_events(self, request: Request) -> Response:
        self.authorize(request)
        task_id = request.path_params["task_id"]
        if not await self.redis.exists(self.keys.task(task_id)):
            raise ApiError(404, "no such task", "task_id", "not_found")
        stream = task_events(self.redis, self.keys, task_id, self.queue)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        await self.redis.ping()
        return json_response({"status": "ready"})

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document())


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json_response(exc.body, exc.status, exc.headers)


async def _redis_down(request: Request, exc: Exception) -> Response:
    return await _api_error(request, redis_down())


def build_app(api: Api, extra_routes: list[Route] | None = None) -> GenerateFirst:
    handlers = {ApiError: _api_error, RedisError: _redis_down}
    app = Starlette(routes=[*api.routes(), *(extra_routes or [])], exception_handlers=handlers)  # type: ignore[arg-type]
    return GenerateFirst(api.generate, app)
