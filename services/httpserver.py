"""Serving a starlette app inside a service's task group (uvicorn, signals left to the runner)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import anyio
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the service runner owns SIGTERM/SIGINT and stops every part together


def server(app: ASGIApp, host: str, port: int) -> Server:
    # uvicorn's "auto" HTTP parser is httptools (a dependency: about twice the requests/s of h11).
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    return Server(config)


async def serve(srv: Server, done: anyio.Event | None = None) -> None:
    try:
        await srv.serve()
    finally:
        if done is not None:
            done.set()


def ops_app(ready: Callable[[], bool], status: Callable[[], str] | None = None) -> Starlette:
    """/healthz, /readyz and /metrics for services without an HTTP API of their own; `status`
    says what a service that is not ready is doing (a generator: `waiting_for_capacity`, ...)."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok = ready()
        text = "ready" if ok else status() if status else "starting"
        return JSONResponse({"status": text}, 200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)])
