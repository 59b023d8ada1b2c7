"""The live dashboard at /ui: queues and consumer groups, running tasks with per-step progress
(SSE), recent results with posters and an inline player, dead letters with a replay button.
Plain HTML, CSS and a little JavaScript shipped with the package; no build step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from services import monitor
from services.consumer import list_dead
from services.follow import last_id
from services.ingest.api import Api, json_response
from services.ingest.api_error import ApiError
from services.ingest.sse import frame
from services.keys import Keys
from services.tasks import TaskStore

STATIC = Path(__file__).parent / "static"
RECENT_EVENTS = 500


class Dashboard:
    def __init__(self, api: Api, redis: Redis, keys: Keys, tasks: list[str], storage: str, lease_ms: int) -> None:
        self.api, self.redis, self.keys, self.tasks, self.lease_ms = api, redis, keys, tasks, lease_ms
        self.files = Path(storage).resolve() if "://" not in storage else None

    def routes(self) -> list[Route]:
        return [
            Route("/ui", self.page),
            Route("/ui/{name:str}", self.static),
            Route("/ui/api/overview", self.overview),
            Route("/ui/api/stream", self.stream),
            Route("/ui/api/dlq/{dlq_id}/replay", self.replay, methods=["POST"]),
            Route("/files/{task_id}/{name}", self.file),
        ]

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in {"app.js", "style.css"}:
            raise ApiError(404, "no such file", None, "not_found")
        return FileResponse(STATIC / name)

    async def overview(self, request: Request) -> Response:
        self.api.authorize(request)
        groups = await monitor.snapshot(self.redis, self.keys, self.tasks, self.lease_ms)
        dead = [
            {
                "id": i,
                "stream": d.stream,
                "task_id": d.task_id,
                "reason": d.reason,
                "attempts": d.attempts,
                "error": d.errors[-1].error if d.errors else "",
            }
            for i, d in await list_dead(self.redis, self.keys, 50)
        ]
        return json_response(
            {"groups": groups, "tasks": await self._recent_tasks(), "dead_letters": dead, "task_types": self.tasks}
        )

    async def _recent_tasks(self) -> list[dict[str, Any]]:
        """Tasks seen in the latest lifecycle events, newest first, with their current state."""
        seen: dict[str, None] = {}
        for _, fields in await self.redis.xrevrange(self.keys.events, count=RECENT_EVENTS):
            if fields.get("task_id"):
                seen.setdefault(fields["task_id"], None)
        store, states = TaskStore(self.redis, self.keys), []
        for task_id in list(seen)[:60]:
            state = await store.get(task_id)
            if state is not None:
                states.append(
                    msgspec.to_builtins(state)
                    | {"video": self._file_url(state.video_url), "poster": self._file_url(state.poster_url)}
                )
        return states

    def _file_url(self, url: str) -> str:
        """Local files through /files (the browser cannot open file:// URLs); http(s) as they are."""
        if url.startswith("file://") and self.files is not None:
            path = Path(url.removeprefix("file://"))
            if path.is_relative_to(self.files):
                return "/files/" + str(path.relative_to(self.files))
        return url if url.startswith(("http://", "https://")) else ""

    async def stream(self, request: Request) -> Response:
        """Every progress and lifecycle entry as SSE, for the live bars."""
        self.api.authorize(request)

        async def entries() -> Any:
            cursors = {
                self.keys.progress: await last_id(self.redis, self.keys.progress),
                self.keys.events: await last_id(self.redis, self.keys.events),
            }
            while True:
                response = await self.redis.xread(cursors, block=15_000, count=500)
                if not response:
                    yield b": keepalive\n\n"
                for stream, rows in response or ():
                    for entry_id, fields in rows:
                        cursors[stream] = entry_id
                        yield frame(fields.get("type", "progress"), fields.get("payload", "{}"))

        return StreamingResponse(entries(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def replay(self, request: Request) -> Response:
        self.api.authorize(request)
        new_id = await TaskStore(self.redis, self.keys).replay_dead(request.path_params["dlq_id"])
        if new_id is None:
            raise ApiError(404, "no such dead letter", "dlq_id", "not_found")
        return json_response({"replayed": request.path_params["dlq_id"], "new_entry_id": new_id})

    async def file(self, request: Request) -> Response:
        self.api.authorize(request)
        task_id, name = request.path_params["task_id"], request.path_params["name"]
        if self.files is None or name not in {"video.mp4", "poster.jpg"} or "/" in task_id or ".." in task_id:
            raise ApiError(404, "no such file", None, "not_found")
        path = self.files / task_id / name
        if not path.is_file():
            raise ApiError(404, "no such file", None, "not_found")
        return FileResponse(path, media_type="video/mp4" if name.endswith(".mp4") else "image/jpeg")
