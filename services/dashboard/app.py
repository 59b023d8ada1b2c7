"""The operator dashboard at /ui: a submit form for every served task, queues and consumer groups,
running tasks with per-step progress (SSE), a task page (parameters, timeline, attempts, video,
webhook deliveries), search and state filters, charts of the last hour, and dead letters with
replay and purge. Plain HTML, CSS and a little JavaScript shipped with the package; no build step."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from services import monitor
from services.consumer import wire
from services.contracts import is_task_id
from services.dashboard.actions import DeadLetterActions
from services.dashboard.charts import charts
from services.dashboard.read import job_dead_letters, webhook_dead_letters
from services.dashboard.task import task_detail
from services.follow import last_id
from services.ingest.api import Api, json_response
from services.ingest.api_error import ApiError
from services.ingest.sse import frame
from services.keys import Keys
from services.models_config import ModelsConfig
from services.taskreads import read_states

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"app.js", "charts.js", "task.js", "submit.js", "common.js", "style.css"}
RECENT_EVENTS = 2_000
STATES = {"queued", "running", "retrying", "completed", "failed", "cancelled", "rejected", "active"}
ACTIVE = {"queued", "running", "retrying"}
SEARCH_CHARS = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SCAN_ROUNDS = 20  # SCAN calls at most per prefix search (of 1,000 keys each)
CHARTS_CACHE_S = 5.0


class Dashboard:
    def __init__(self, api: Api, redis: Redis, keys: Keys, models: ModelsConfig, storage: str, lease_ms: int) -> None:
        self.api, self.redis, self.keys, self.models, self.lease_ms = api, redis, keys, models, lease_ms
        self.tasks = models.names
        self.files = Path(storage).resolve() if "://" not in storage else None
        self.actions = DeadLetterActions(api, redis, keys)
        self._charts: dict[int, tuple[float, dict[str, Any]]] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/ui", self.page),
            Route("/ui/{name:str}", self.static),
            Route("/ui/api/overview", self.overview),
            Route("/ui/api/stream", self.stream),
            Route("/ui/api/tasks", self.search),
            Route("/ui/api/tasks/{task_id}", self.task),
            Route("/ui/api/charts", self.charts),
            *self.actions.routes(),
            Route("/files/{task_id}/{name}", self.file),
        ]

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            raise ApiError(404, "no such file", None, "not_found")
        return FileResponse(STATIC / name)

    async def overview(self, request: Request) -> Response:
        self.api.authorize(request)
        groups = await monitor.snapshot(self.redis, self.keys, self.tasks, self.lease_ms)
        return json_response(
            {
                "groups": groups,
                "tasks": await self._recent_tasks(),
                "dead_letters": await job_dead_letters(self.redis, self.keys, 50),
                "webhook_dead_letters": await webhook_dead_letters(self.redis, self.keys, 50),
                "task_types": self.tasks,
                "task_specs": [self._spec(name) for name in self.tasks],
            }
        )

    def _spec(self, name: str) -> dict[str, Any]:
        """What the submit form needs to offer only valid choices."""
        served = self.models.tasks[name]
        p = served.preset
        return {
            "name": name,
            "kind": p.kind,
            "sizes": list(p.sizes),
            "frame_num": p.frame_num,
            "max_frames": p.max_frames,
            "sample_steps": p.sample_steps,
            "max_steps": p.max_steps,
            "guide_scale": list(p.guide_scale),
            "needs_image": p.needs_image,
            "accepts_image": p.accepts_image,
            "fps": p.fps,
        }

    async def _recent_ids(self) -> list[str]:
        """Tasks seen in the latest lifecycle events, newest first."""
        seen: dict[str, None] = {}
        for _, fields in wire.text_rows(await wire.xrevrange(self.redis, self.keys.events, count=RECENT_EVENTS)):
            if fields.get("task_id"):
                seen.setdefault(fields["task_id"], None)
        return list(seen)

    async def _recent_tasks(self, limit: int = 60) -> list[dict[str, Any]]:
        ids = (await self._recent_ids())[:limit]
        states = await read_states(self.redis, self.keys, ids)
        return [self._task_row(states[i]) for i in ids if i in states]

    def _task_row(self, state: Any) -> dict[str, Any]:
        return msgspec.to_builtins(state) | {
            "video": self._file_url(state.video_url),
            "poster": self._file_url(state.poster_url),
        }

    async def search(self, request: Request) -> Response:
        """Recent tasks, or tasks whose id starts with `q`, optionally of one `status`."""
        self.api.authorize(request)
        q, status, limit = _search_params(request)
        ids = await self._search_ids(q) if q else await self._recent_ids()
        states = await read_states(self.redis, self.keys, ids)
        rows = [self._task_row(states[i]) for i in ids if i in states and _matches(states[i].status, status)]
        return json_response({"tasks": rows[:limit], "matched": len(rows)})

    async def _search_ids(self, q: str) -> list[str]:
        """The exact id first, then recent ids with the prefix, then a bounded key scan."""
        found = dict.fromkeys([q] if is_task_id(q) else [])
        found.update(dict.fromkeys(i for i in await self._recent_ids() if i.startswith(q)))
        cursor, prefix = 0, self.keys.task("")
        for _ in range(SCAN_ROUNDS):
            cursor, batch = await self.redis.scan(cursor, match=f"{prefix}{q}*", count=1000)
            found.update(dict.fromkeys(str(k).removeprefix(prefix) for k in batch))
            if cursor == 0:
                break
        return list(found)

    async def task(self, request: Request) -> Response:
        self.api.authorize(request)
        task_id = request.path_params["task_id"]
        if not is_task_id(task_id):
            raise ApiError(422, "task_id is not a valid task id", "task_id", "invalid")
        detail = await task_detail(self.redis, self.keys, task_id, self._file_url)
        if detail is None:
            raise ApiError(404, "no such task", "task_id", "not_found")
        return json_response(detail)

    async def charts(self, request: Request) -> Response:
        """Per-minute figures; cached a few seconds, since every open page polls them."""
        self.api.authorize(request)
        minutes = _int_param(request, "minutes", 60, 5, 360)
        cached = self._charts.get(minutes)
        if cached is None or time.monotonic() - cached[0] > CHARTS_CACHE_S:
            cached = (time.monotonic(), await charts(self.redis, self.keys, self.tasks, minutes))
            self._charts[minutes] = cached
        return json_response(cached[1])

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
                read = await wire.xread(self.redis, cursors, count=500, block_ms=15_000)
                if not read:
                    yield b": keepalive\n\n"
                for entry in read:
                    cursors[entry.stream] = entry.id
                    if entry.defect is None:  # not written by the services
                        yield frame(entry.fields.get("type", "progress"), entry.fields.get("payload", "{}"))

        return StreamingResponse(entries(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def file(self, request: Request) -> Response:
        self.api.authorize(request)
        task_id, name = request.path_params["task_id"], request.path_params["name"]
        if self.files is None or name not in {"video.mp4", "poster.jpg"} or "/" in task_id or ".." in task_id:
            raise ApiError(404, "no such file", None, "not_found")
        path = self.files / task_id / name
        if not path.is_file():
            raise ApiError(404, "no such file", None, "not_found")
        return FileResponse(path, media_type="video/mp4" if name.endswith(".mp4") else "image/jpeg")


def _matches(actual: str, wanted: str) -> bool:
    return not wanted or actual == wanted or (wanted == "active" and actual in ACTIVE)


def _search_params(request: Request) -> tuple[str, str, int]:
    q = request.query_params.get("q", "").strip()
    if q and not SEARCH_CHARS.fullmatch(q):
        raise ApiError(422, "q must be (the start of) a task id: letters, digits and . _ : -", "q", "invalid")
    status = request.query_params.get("status", "")
    if status and status not in STATES:
        raise ApiError(422, f"status must be one of {', '.join(sorted(STATES))}", "status", "invalid")
    return q, status, _int_param(request, "limit", 60, 1, 500)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be an integer", name, "invalid") from None
    if not low <= value <= high:
        raise ApiError(422, f"{name} must be between {low} and {high}", name, "invalid")
    return value
