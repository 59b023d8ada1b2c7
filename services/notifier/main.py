"""Process entry of `wan22 notifier`: logging, metrics, signals, the Redis client."""

from __future__ import annotations

from services import logs
from services.notifier.service import Notifier
from services.notifier.settings import NotifierSettings
from services.redisconn import connect
from services.runner import run_until_signalled, serve_metrics


async def serve(settings: NotifierSettings) -> None:
    logs.configure(settings.log_format, settings.log_level, service="notifier")
    serve_metrics(settings.metrics_port)
    redis = connect(settings.redis_url)
    notifier = Notifier(redis, settings)
    try:
        await run_until_signalled(notifier.run, notifier.stop)
    finally:
        await redis.aclose()
