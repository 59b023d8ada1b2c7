"""A dead-lettered job for the dashboard tests, made the way the consumer makes one."""

from __future__ import annotations

import contextlib

import httpx
from redis.exceptions import ResponseError

from services.consumer import Entry, dead_letter
from services.contracts import ErrorRecord, Failed, now
from services.keys import GENERATOR_GROUP, Keys
from services.tasks import TaskStore

KEYS = Keys()


async def dead_letter_t2v_job(redis, http: httpx.AsyncClient) -> tuple[str, str]:
    """A t2v job (no generator serves t2v in these tests) failed and dead-lettered; its task id
    and dead-letter id."""
    task_id = (await http.post("/generate", json={"task": "t2v-A14B", "prompt": "doomed"})).json()["task_id"]
    stream = KEYS.jobs("t2v-A14B")
    with contextlib.suppress(ResponseError):  # the group exists after the first call
        await redis.xgroup_create(stream, GENERATOR_GROUP, id="0")
    [(_, rows)] = await redis.xreadgroup(GENERATOR_GROUP, "gen-t2v", {stream: ">"}, count=100)
    [(entry_id, fields)] = [row for row in rows if row[1]["task_id"] == task_id]
    errors = [ErrorRecord(at=now(), error="model exploded", attempt=1)]
    dlq_id = await dead_letter(redis, KEYS, GENERATOR_GROUP, Entry(stream, entry_id, fields), errors, "exhausted")
    await TaskStore(redis, KEYS).finish(Failed(task_id=task_id, error="model exploded"), {})
    return task_id, dlq_id
