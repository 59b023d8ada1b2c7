"""A generator's gang as operators see it: one Redis hash per generator (`Keys.gang`), written by
the generator when its gang changes state and renewed by its heartbeat (it expires with a dead
generator), read by `wan22 groups` and the dashboard. No Ray here: readers run without it.

Fields: `task`, `state` (`starting`, `waiting_for_capacity`, `ready`, `down`), `since` (epoch
seconds of the last change), `world_size`, `strategy`, `placement_group` (its name in Ray),
`master` (the process group's rendezvous, rank 0's node IP and port), `members` (JSON: rank,
host (node IP), port, pid, node (hostname), node_id (Ray's)), and one field per rank, `"0"`,
`"1"`, ...: `node:pid`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from services.keys import Keys
from services.redisconn import text_hash

# A gang's states.
STARTING = "starting"  # placement group asked for, or ranks joining and loading the model
WAITING = "waiting_for_capacity"  # Ray has no room for the placement group yet; no job is claimed
READY = "ready"
DOWN = "down"  # torn down (or never started): rebuilt by the next job or health check


def fields(
    *,
    task: str,
    state: str,
    since: float,
    world_size: int,
    strategy: str,
    placement_group: str,
    master: str,
    members: list[dict[str, Any]],
) -> dict[str, str]:
    record = {
        "task": task,
        "state": state,
        "since": f"{since:.3f}",
        "world_size": str(world_size),
        "strategy": strategy,
        "placement_group": placement_group,
        "master": master,
        "members": json.dumps(members),
    }
    return record | {str(m["rank"]): f"{m['node']}:{m['pid']}" for m in members}


async def read_all(redis: Redis, keys: Keys) -> list[dict[str, Any]]:
    """Every live generator's gang, by consumer name."""
    prefix = keys.gang("")
    gangs = []
    async for key in redis.scan_iter(match=keys.gangs_pattern, _type="hash"):
        raw = await text_hash(redis, key)
        if raw.get("state"):  # gone between SCAN and HGETALL, or a record from before states
            gangs.append(_parse(key.removeprefix(prefix), raw))
    return sorted(gangs, key=lambda g: g["consumer"])


def _parse(consumer: str, raw: dict[str, str]) -> dict[str, Any]:
    since = float(raw.get("since") or 0)
    return {
        "consumer": consumer,
        "task": raw.get("task", ""),
        "state": raw["state"],
        "since": since,
        "for_s": round(max(0.0, time.time() - since), 1),
        "world_size": int(raw.get("world_size") or 0),
        "strategy": raw.get("strategy", ""),
        "placement_group": raw.get("placement_group", ""),
        "master": raw.get("master", ""),
        "members": json.loads(raw.get("members") or "[]"),
    }


def flags(gangs: list[dict[str, Any]]) -> list[str]:
    """A gang waiting for capacity: Ray has no room for its placement group (the Ray autoscaler
    should be adding nodes); its generator claims no job meanwhile."""
    return [
        f"gang {g['consumer']} ({g['task']}): waiting for capacity for {g['for_s']:.0f} s "
        f"({g['world_size']} bundles, {g['strategy']})"
        for g in gangs
        if g["state"] == WAITING
    ]
