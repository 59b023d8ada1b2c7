"""`wan22 ingest`: run the ingest service (stream door + HTTP API)."""

from __future__ import annotations

import argparse

from services import eventloop, logs, settings
from services.ingest.settings import IngestSettings
from services.models_config import load_models
from services.redisconn import connect
from services.runner import run_until_signalled


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ingest", help="accept requests from the requests stream and over HTTP")
    settings.add_arguments(parser, IngestSettings)
    parser.add_argument("--no-http", action="store_true", help="consume the requests stream only")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    config = settings.from_args(IngestSettings, args)
    models = load_models(config.models)
    logs.configure(config.log_format, config.log_level, service="ingest")
    eventloop.run(_serve, config, models, not args.no_http)
    return 0


async def _serve(config: IngestSettings, models, http: bool) -> None:  # type: ignore[no-untyped-def]
    from services.ingest.app import IngestService

    redis = connect(config.redis_url)
    try:
        service = IngestService(redis, config, models)
        await run_until_signalled(lambda: service.run(http=http), service.stop)
    finally:
        await redis.aclose()
