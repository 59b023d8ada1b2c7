"""The gang's placement group: named, so a restarted driver finds and removes its old one, and
waited for without a deadline, so a gang that does not fit yet waits for capacity.

A placement group dies with the Ray job that created it, but not at once: a driver connected
through Ray Client (`ray://`, as on KubeRay) keeps its session, actors and reservations on the
head for the client's reconnect grace period after the driver process is gone. Named after the
generator (`WAN22_GENERATOR_ID`, stable across restarts of one pod), the group of the dead driver
is found by name and removed before the new one is asked for; Ray refuses a second live group of
the same name anyway.

While a group is pending, Ray reports the demand to its autoscaler (which adds worker nodes to
fit it) and places it as soon as a node with room joins, so the wait needs no retry of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio
import structlog

log = structlog.get_logger("wan22.gang")

PLACEMENT_GRACE_S = 1.0  # a cluster with room places a group in milliseconds; longer means no room
STILL_WAITING_LOG_S = 60.0


def remove_stale(name: str) -> str | None:
    """Remove a live placement group of this name (a previous driver's); returns its id."""
    import ray
    from ray.util.placement_group import remove_placement_group

    try:
        old = ray.util.get_placement_group(name)
    except ValueError:  # none of that name (Ray Client wraps it, still a ValueError)
        return None
    remove_placement_group(old)
    log.warning("gang.stale_placement_group_removed", placement_group=name, id=old.id.hex())
    return str(old.id.hex())


async def create(name: str, bundles: list[dict[str, float]], strategy: str) -> Any:
    """A new placement group of this name, after removing any old one."""
    from ray.util.placement_group import placement_group

    await anyio.to_thread.run_sync(remove_stale, name)
    return placement_group(bundles, strategy=strategy, name=name)


async def wait_placed(group: Any, on_waiting: Callable[[], None]) -> None:
    """Until Ray has placed every bundle, however long that takes (cancellable). Unless that happens
    at once, `on_waiting` is called, and again with each reminder in the log (every minute)."""
    import ray

    ready = asyncio.ensure_future(_await(group.ready()))
    try:
        next_log = 0.0
        while not (await asyncio.wait({ready}, timeout=PLACEMENT_GRACE_S))[0]:
            if time.monotonic() >= next_log:
                next_log = time.monotonic() + STILL_WAITING_LOG_S
                table = await anyio.to_thread.run_sync(ray.util.placement_group_table, group)
                _log_waiting(table)
                on_waiting()
        ready.result()
    finally:
        ready.cancel()


def _log_waiting(table: dict[str, Any]) -> None:
    bundles = table.get("bundles", {})
    log.warning(
        "gang.waiting_for_capacity",
        placement_group=table.get("name"),
        bundles=len(bundles),
        bundle=bundles.get(0),
        strategy=table.get("strategy"),
        scheduling_state=table.get("stats", {}).get("scheduling_state"),  # NO_RESOURCES, INFEASIBLE
    )


async def _await(ref: Any) -> Any:
    return await ref
