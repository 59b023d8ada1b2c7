"""`wan22 generator --task T`: run one gang for one task type."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import anyio
import structlog

from services import logs, settings
from services.cli.errors import CliError
from services.generator.settings import GeneratorSettings
from services.models_config import ServedTask, load_models
from services.redisconn import connect
from services.runner import run_until_signalled

log = structlog.get_logger("wan22.generator")

# Ray Client's proxy on the head forks a server per driver; the fork sometimes dies at once (a gRPC
# race in Ray, ray-project/ray#63202), more often while another driver's session lingers, as after
# a restart. Another try forks anew.
CONNECT_ATTEMPTS = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generator", help="claim jobs of one task and run them on a Ray gang")
    settings.add_arguments(parser, GeneratorSettings)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    config = settings.from_args(GeneratorSettings, args)
    served = _served_task(config)
    logs.configure(config.log_format, config.log_level, service=f"generator:{served.name}")
    started_ray = _connect_ray(config)
    try:
        anyio.run(_serve, config, served)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return 0


def _served_task(config: GeneratorSettings) -> ServedTask:
    if not config.task:
        raise CliError("--task (WAN22_TASK) is required", 2)
    served = load_models(config.models).get(config.task)
    if served is None or not served.ckpt_dir:
        raise CliError(f"task {config.task!r} has no ckpt_dir in the models configuration (WAN22_MODELS)", 2)
    return served


def _connect_ray(config: GeneratorSettings) -> bool:
    """Connect to RAY_ADDRESS (e.g. a KubeRay head) or start a local Ray; True if we started it."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"num_cpus": config.ray_num_cpus} if not address and config.ray_num_cpus else {}
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            ray.init(address=address, namespace="wan22", include_dashboard=False, log_to_driver=True, **options)
            return address is None
        except ConnectionAbortedError as exc:  # Ray Client: "Initialization failure from server"
            if attempt == CONNECT_ATTEMPTS:
                raise
            log.warning("ray.connect_failed", attempt=attempt, error=str(exc).strip().splitlines()[-1])
            ray.shutdown()
            time.sleep(attempt)
    raise AssertionError("unreachable")


async def _serve(config: GeneratorSettings, served: ServedTask) -> None:
    from services.generator.service import GeneratorService

    redis = connect(config.redis_url)
    try:
        service = GeneratorService(redis, config, served)
        await run_until_signalled(service.run, service.stop)
    finally:
        await redis.aclose()
