"""Running a service process: signals, metrics endpoint, clean shutdown."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

import anyio
import structlog
from prometheus_client import start_http_server

from services import gctuning

log = structlog.get_logger("wan22.runner")


async def run_until_signalled(body: Callable[[], Awaitable[None]], stop: Callable[[], None]) -> None:
    """Run `body`; the first SIGTERM/SIGINT calls `stop` (graceful drain), a second one cancels."""
    gctuning.tune()  # start-up is done: what exists now lives as long as the process
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    if tg.cancel_scope.cancel_called:
                        return
                    log.info("service.stopping", signal=signal.Signals(signum).name)
                    stop()
                    break
                async for _ in signals:
                    log.warning("service.forced_stop")
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch_signals)
        await body()
        tg.cancel_scope.cancel()


def serve_metrics(port: int) -> None:
    """Prometheus metrics on their own port (services without an HTTP API of their own)."""
    if port:
        start_http_server(port)
        log.info("metrics.serving", port=port)
