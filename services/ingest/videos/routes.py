"""`/v1/videos`, the OpenAI Videos API, served by ingest next to `/generate`: one more door to the
same tasks (same auth, queue, checks and states), with OpenAI's names and error envelope."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from services.assets import ASSETS, AssetStore, asset_key
from services.contracts import TERMINAL, TaskState, is_task_id, now
from services.ingest.api import Api, json_response
from services.ingest.api_error import ApiError, not_replicated, redis_down
from services.ingest.invalid import Invalid
from services.ingest.videos.content import byte_range
from services.ingest.videos.create import PARAM_OF_FIELD, parse_create, to_request
from services.ingest.videos.form import read_values
from services.ingest.videos.objects import poll_after_ms, video_object
from services.models_config import ModelsConfig, catalogue, describe
from services.redisconn import NotReplicated
from services.taskreads import read_states

Handler = Callable[[Any, Request], Awaitable[Response]]
_STATUS_OF_REASON = {"queue_full": 429}


def openai_errors(handler: Handler) -> Handler:
    """Every error as `{"error": {"message", "type", "param", "code"}}`, whatever raised it."""

    @wraps(handler)
    async def wrapped(self: Any, request: Request) -> Response:
        try:
            return await handler(self, request)
        except Invalid as exc:
            retry = {"Retry-After": "5"} if exc.reason == "queue_full" else None
            return _envelope(
                ApiError(_STATUS_OF_REASON.get(exc.reason, 400), exc.message, exc.field, exc.reason, retry)
            )
        except ApiError as exc:
            return _envelope(exc)
        except NotReplicated as exc:
            return _envelope(not_replicated(str(exc)))
        except RedisError:
            return _envelope(redis_down())

    return wrapped


def _envelope(exc: ApiError) -> Response:
    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    if exc.status in (401, 403):
        kind = "authentication_error" if exc.status == 401 else "permission_error"
    body = exc.body
    error = {"message": body["error"], "type": kind, "param": body["field"], "code": body["reason"]}
    return json_response({"error": error}, exc.status, exc.headers)


class VideosApi:
    def __init__(self, api: Api, models: ModelsConfig, assets: AssetStore, *, default_model: str,
                 max_image_bytes: int, retention_s: int) -> None:  # fmt: skip
        self.api, self.models, self.assets = api, models, assets
        self.default_model, self.max_image, self.retention_s = default_model, max_image_bytes, retention_s
        self.tasks = api.door.tasks

    def routes(self) -> list[Route]:
        return [
            Route("/v1/videos", self.create, methods=["POST"]),
            Route("/v1/videos", self.list_videos, methods=["GET"]),
            Route("/v1/videos/{video_id}", self.retrieve, methods=["GET"]),
            Route("/v1/videos/{video_id}", self.delete, methods=["DELETE"]),
            Route("/v1/videos/{video_id}/content", self.content, methods=["GET", "HEAD"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model}", self.retrieve_model, methods=["GET"]),
        ]

    @openai_errors
    async def list_models(self, request: Request) -> Response:
        """OpenAI's model list: each served task, with its sizes, fps and the LoRAs it offers."""
        self.api.authorize(request)
        return json_response({"object": "list", "data": [_model_object(m) for m in catalogue(self.models)]})

    @openai_errors
    async def retrieve_model(self, request: Request) -> Response:
        self.api.authorize(request)
        served = self.models.get(request.path_params["model"])
        if served is None:
            raise ApiError(404, f"no model {request.path_params['model']!r}", "model", "model_not_found")
        return json_response(_model_object(describe(served)))

    @openai_errors
    async def create(self, request: Request) -> Response:
        self.api.authorize(request)
        values = await read_values(request, self.api.max_body, self.max_image)
        create = parse_create(values)
        generate = to_request(create, self.models, self.default_model)
        request_id = request.headers.get("x-request-id") or secrets.token_hex(16)
        try:
            result = await self.api.door.submit(generate, request_id, request.headers.get("idempotency-key"))
        except Invalid as exc:
            seconds_given = create.seconds is not None and create.num_frames is None
            param = "seconds" if exc.field == "frame_num" and seconds_given else PARAM_OF_FIELD.get(exc.field or "")
            raise Invalid(exc.message, param or exc.field, exc.reason) from None
        state = await self._state(result.task_id)
        return json_response(video_object(state, self.models, self.retention_s))

    @openai_errors
    async def retrieve(self, request: Request) -> Response:
        self.api.authorize(request)
        state = await self._state(request.path_params["video_id"])
        state.queue = await self.api.queue(state)
        headers = {"openai-poll-after-ms": str(poll_after_ms(state))} if state.status not in TERMINAL else None
        return json_response(video_object(state, self.models, self.retention_s), headers=headers)

    @openai_errors
    async def list_videos(self, request: Request) -> Response:
        self.api.authorize(request)
        after, limit, descending = _list_params(request)
        ids = await self._page_ids(after, limit + 1, descending)
        states = await read_states(self.api.redis, self.api.keys, ids[:limit])
        data = [video_object(states[i], self.models, self.retention_s) for i in ids[:limit] if _listed(states.get(i))]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        body = {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": len(ids) > limit}
        return json_response(body)

    async def _page_ids(self, after: str | None, count: int, descending: bool) -> list[str]:
        index, redis = self.api.keys.tasks_by_created, self.api.redis
        start = 0
        if after is not None:
            rank = await (redis.zrevrank(index, after) if descending else redis.zrank(index, after))
            if rank is None:
                raise ApiError(400, f"after: no video {after!r} to page from", "after", "invalid")
            start = int(rank) + 1  # type: ignore[arg-type]  # ZRANK without WITHSCORE is an int
        ids = await redis.zrange(index, start, start + count - 1, desc=descending)
        return [str(i) for i in ids]

    @openai_errors
    async def delete(self, request: Request) -> Response:
        """Cancels a queued or running task (a running one stops at its next step), removes its
        stored files and takes it off the list."""
        self.api.authorize(request)
        state = await self._state(request.path_params["video_id"])
        if state.status not in TERMINAL:
            await self.tasks.cancel(state.task_id)
        await self.assets.delete([asset_key(state.task_id, asset.file) for asset in ASSETS.values()])
        async with self.api.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.api.keys.task(state.task_id), "deleted_at", str(now()))
            pipe.zrem(self.api.keys.tasks_by_created, state.task_id)
            pipe.delete(self.api.keys.preview(state.task_id))
            await pipe.execute()
        return json_response({"id": state.task_id, "object": "video.deleted", "deleted": True})

    @openai_errors
    async def content(self, request: Request) -> Response:
        self.api.authorize(request)
        variant = request.query_params.get("variant", "video")
        asset = ASSETS.get(variant)
        if asset is None:
            raise ApiError(400, f"variant must be one of {', '.join(ASSETS)}", "variant", "invalid")
        state = await self._state(request.path_params["video_id"])
        if variant == "thumbnail" and state.status not in TERMINAL and (preview := await self._preview(state)):
            return Response(preview, 200, {"cache-control": "no-store"}, media_type=asset.media_type)
        if state.status != "completed":
            status, code = (409, "video_not_ready") if state.status not in TERMINAL else (404, "video_failed")
            raise ApiError(status, f"the video is {state.status}; content exists once it is completed", None, code)
        key = asset_key(state.task_id, asset.file)
        size = await self.assets.size(key)
        if size is None:
            raise ApiError(404, f"no {variant} is stored for this video", "variant", "not_found")
        span = byte_range(request.headers.get("range"), size)
        headers = {
            "accept-ranges": "bytes",
            "content-length": str(span.length),
            "cache-control": "private, max-age=3600",
        }
        if span.partial:
            headers["content-range"] = f"bytes {span.start}-{span.end}/{size}"
        status = 206 if span.partial else 200
        if request.method == "HEAD" or span.length == 0:
            return Response(b"", status, headers, media_type=asset.media_type)
        body = self.assets.read(key, span.start, span.end)
        return StreamingResponse(body, status, headers, media_type=asset.media_type)

    async def _preview(self, state: TaskState) -> bytes | None:
        """The latest preview of a running video (tasks with previews on)."""
        encoded = await self.api.redis.get(self.api.keys.preview(state.task_id))
        return base64.b64decode(encoded) if encoded else None

    async def _state(self, video_id: str) -> TaskState:
        state = await self.tasks.get(video_id) if is_task_id(video_id) else None
        if state is None or state.deleted_at:
            raise ApiError(404, f"no video {video_id!r}", "video_id", "not_found")
        return state


def _model_object(described: dict[str, Any]) -> dict[str, Any]:
    return {"object": "model", "created": 0, "owned_by": "wan22-serve"} | described


def _listed(state: TaskState | None) -> bool:
    return state is not None and not state.deleted_at and state.status != "rejected"


def _list_params(request: Request) -> tuple[str | None, int, bool]:
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "order must be asc or desc", "order", "invalid")
    raw = query.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ApiError(400, "limit must be an integer from 1 to 100", "limit", "invalid")
    return query.get("after") or None, int(raw), order == "desc"
