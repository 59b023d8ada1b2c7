"""The dashboard's write actions on dead letters: replay one (jobs and events, or webhooks) and
purge some or all. Cancelling a task is the API's own `DELETE /tasks/{id}`."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.consumer import wire
from services.dashboard.read import check_entry_id
from services.ingest.api import Api, json_response
from services.ingest.api_error import ApiError
from services.keys import Keys
from services.notifier import dlq as webhook_dlq
from services.taskreads import DECODE_ERRORS
from services.tasks import TaskStore

MAX_BODY = 1 << 20
MAX_IDS = 10_000


class PurgeRequest(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str] = []
    all: bool = False


_purge = msgspec.json.Decoder(PurgeRequest)


class DeadLetterActions:
    def __init__(self, api: Api, redis: Redis, keys: Keys) -> None:
        self.api, self.redis, self.keys = api, redis, keys

    def routes(self) -> list[Route]:
        return [
            Route("/ui/api/dlq/purge", self.purge_jobs, methods=["POST"]),
            Route("/ui/api/dlq/{dlq_id}/replay", self.replay_job, methods=["POST"]),
            Route("/ui/api/webhooks/dlq/purge", self.purge_webhooks, methods=["POST"]),
            Route("/ui/api/webhooks/dlq/{dlq_id}/replay", self.replay_webhook, methods=["POST"]),
        ]

    async def replay_job(self, request: Request) -> Response:
        """Back onto its stream with a fresh attempt budget; a job's task is reopened."""
        self.api.authorize(request)
        dlq_id = check_entry_id(request.path_params["dlq_id"], "dlq_id")
        try:
            new_id = await TaskStore(self.redis, self.keys).replay_dead(dlq_id)
        except DECODE_ERRORS:
            raise _undecodable() from None
        if new_id is None:
            raise ApiError(404, "no such dead letter", "dlq_id", "not_found")
        return json_response({"replayed": dlq_id, "new_entry_id": new_id})

    async def replay_webhook(self, request: Request) -> Response:
        """Scheduled again now, same `webhook-id` (receivers dedupe on it)."""
        self.api.authorize(request)
        dlq_id = check_entry_id(request.path_params["dlq_id"], "dlq_id")
        try:
            delivery = await webhook_dlq.replay(self.redis, self.keys, dlq_id)
        except DECODE_ERRORS:
            raise _undecodable() from None
        if delivery is None:
            raise ApiError(404, "no such webhook dead letter", "dlq_id", "not_found")
        return json_response({"replayed": dlq_id, "delivery_id": delivery})

    async def purge_jobs(self, request: Request) -> Response:
        return await self._purge(request, self.keys.dlq)

    async def purge_webhooks(self, request: Request) -> Response:
        return await self._purge(request, self.keys.webhook_dlq)

    async def _purge(self, request: Request, stream: str) -> Response:
        self.api.authorize(request)
        body = await _purge_request(request)
        if body.all:
            return json_response({"purged": await _purge_all(self.redis, stream)})
        ids = [check_entry_id(i, "ids") for i in body.ids]
        return json_response({"purged": int(await self.redis.xdel(stream, *ids))})


async def _purge_request(request: Request) -> PurgeRequest:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"body is larger than {MAX_BODY} bytes", None, "too_large")
    try:
        body = _purge.decode(raw or b"{}")
    except msgspec.ValidationError as exc:
        raise ApiError(422, f"bad purge request: {exc}", "ids", "invalid") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", None, "malformed") from None
    if not body.all and not body.ids:
        raise ApiError(422, "name dead-letter ids, or send all: true", "ids", "invalid")
    if body.all and body.ids:
        raise ApiError(422, "send either ids or all: true, not both", "ids", "invalid")
    if len(body.ids) > MAX_IDS:
        raise ApiError(422, f"at most {MAX_IDS} ids per request", "ids", "too_large")
    return body


async def _purge_all(redis: Redis, stream: str) -> int:
    """Everything up to the newest entry now (letters that die meanwhile stay), in one command."""
    newest = wire.text_rows(await wire.xrevrange(redis, stream, count=1))
    if not newest:
        return 0
    ms, _, seq = newest[0][0].partition("-")
    return int(await redis.xtrim(stream, minid=f"{ms}-{int(seq) + 1}", approximate=False))


def _undecodable() -> ApiError:
    message = "this dead letter cannot be decoded, so it cannot be replayed; purge it"
    return ApiError(422, message, "dlq_id", "undecodable")
