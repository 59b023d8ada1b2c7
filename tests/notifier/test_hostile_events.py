"""Hostile entries on the events stream through a running notifier process: any bytes in field
names and values, mixed with real events. The notifier stays up, every entry is consumed (nothing
pending, no lag), what is not an event is dead-lettered once, and the real events are delivered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import redis as redis_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contracts import Completed, TaskState, event_entry, state_to_hash
from services.keys import NOTIFIER_GROUP, Keys
from tests.notifier.conftest import SECRET
from tests.notifier.receiver import Receiver
from tests.redis_server import RedisServer

KEYS = Keys(prefix="hostile-events")
TASKS = 50  # real events name one of these tasks, each with its own webhook

RawEntry = list[tuple[bytes, bytes]]
NAMES = [b"type", b"task_id", b"payload", b"_history"]
VALUES = [b"completed", b"failed", b"t-0", b"{}", b'{"task_id":"t-0"}', b"\x00\xff not json"]
raw_entries = st.lists(
    st.tuples(st.sampled_from(NAMES) | st.binary(max_size=10), st.sampled_from(VALUES) | st.binary(max_size=40)),
    min_size=1,
    max_size=5,
)
real_events = st.integers(0, TASKS - 1).map(lambda n: ("real", n))
bursts = st.lists(raw_entries | real_events, min_size=20, max_size=60)


def _spawn(redis_url: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "WAN22_REDIS_URL": redis_url,
        "WAN22_PREFIX": KEYS.prefix,
        "WAN22_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
        "WAN22_WEBHOOK_SECRET": SECRET,
        "WAN22_METRICS_PORT": "0",
        "WAN22_LOG_LEVEL": "warning",
    }
    return subprocess.Popen([sys.executable, "-m", "services.cli.main", "notifier"], env=env, cwd=os.getcwd())


def _entry(item: RawEntry | tuple[str, int]) -> RawEntry:
    if isinstance(item, tuple):
        fields = event_entry(Completed(task_id=f"t-{item[1]}", video_url="v"))
        return [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in fields.items()]
    return item


def _consumed(redis: redis_sync.Redis) -> bool:
    """The notifier's group has read everything and acked it (False until the notifier made it)."""
    groups = [g for g in redis.xinfo_groups(KEYS.events) if g["name"] == NOTIFIER_GROUP.encode()]
    return bool(groups) and groups[0]["lag"] == 0 and groups[0]["pending"] == 0


def test_fuzzed_events_never_stop_the_notifier(redis_server: RedisServer, receiver: Receiver):
    redis = redis_sync.Redis.from_url(redis_server.url)
    for n in range(TASKS):
        state = TaskState(task_id=f"t-{n}", status="completed", webhook_url=receiver.url(f"/ok/t-{n}"))
        redis.hset(KEYS.task(f"t-{n}"), mapping=state_to_hash(state))
    proc = _spawn(redis_server.url)
    sent: list[str] = []
    real: set[int] = set()
    try:

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(burst=bursts)
        def one_burst(burst: list) -> None:
            pipe = redis.pipeline(transaction=False)
            for item in burst:
                pipe.execute_command("XADD", KEYS.events, "*", *(part for pair in _entry(item) for part in pair))
            sent.extend(entry_id.decode() for entry_id in pipe.execute())
            real.update(item[1] for item in burst if isinstance(item, tuple))

        one_burst()
        deadline = time.monotonic() + 60
        while not (_consumed(redis) and _delivered_tasks(receiver) >= real):
            assert time.monotonic() < deadline, f"pending or undelivered after 60 s ({len(sent)} entries)"
            time.sleep(0.1)
        assert proc.poll() is None  # still running
        dead = Counter(json.loads(fields[b"payload"])["entry_id"] for _, fields in redis.xrange(KEYS.dlq))
        assert dead and max(dead.values()) == 1 and set(dead) <= set(sent)
        assert len(sent) >= 800
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        redis.close()


def _delivered_tasks(receiver: Receiver) -> set[int]:
    return {int(request.path.rsplit("-", 1)[1]) for request in receiver.received("/ok/t-")}
