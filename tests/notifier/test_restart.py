"""A notifier killed mid-attempt loses nothing: the lease in the schedule brings it back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from services.contracts import Completed
from services.notifier import store
from tests.notifier.conftest import SECRET, make_settings, publish, put_task, running, wait_until


def spawn_notifier(redis_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WAN22_REDIS_URL": redis_url,
        "WAN22_WEBHOOK_SCHEDULE": "0,0.2,0.2",
        "WAN22_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
        "WAN22_WEBHOOK_TIMEOUT_S": "1",
        "WAN22_WEBHOOK_SECRET": SECRET,
        "WAN22_METRICS_PORT": "0",
        "WAN22_LOG_LEVEL": "warning",
    }
    return subprocess.Popen([sys.executable, "-m", "services.cli.main", "notifier"], env=env, cwd=os.getcwd())


async def test_killed_mid_attempt_is_redelivered_with_the_same_id(redis, redis_url, keys, receiver):
    await put_task(redis, keys, "k1", receiver.url("/hang-once/3/x"))
    await publish(redis, keys, Completed(task_id="k1", video_url="v"))
    proc = spawn_notifier(redis_url)
    try:
        await wait_until(lambda: len(receiver.received()) == 1, timeout=15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    delivery = receiver.received()[0].webhook_id
    # The dead notifier's lease on the delivery (epoch seconds), and the receiver's clock then.
    lease_until = await redis.zscore(keys.webhook_schedule, delivery)
    epoch, mono = time.time(), time.monotonic()
    async with running(redis, make_settings(redis_url, webhook_timeout_s=1)):
        await wait_until(lambda: len(receiver.received()) == 2, timeout=10)
        await wait_until(lambda: _delivered(redis, keys, delivery))
    first, second = receiver.received()
    assert first.webhook_id == second.webhook_id
    # Not before the lease (2 × timeout + 1 s from the claim) ran out: a retry after a lost response
    # would come 0.2 s after the first. Read against the lease itself, since on a loaded machine the
    # first request may reach the receiver well after the claim.
    assert lease_until is not None, "the killed notifier held a lease on the delivery"
    assert second.at - mono + epoch >= lease_until - 0.05  # clock reading slop
    second.verify(SECRET)
    _, attempts = await store.status(redis, keys, delivery)
    assert [a.status for a in attempts] == [200]  # the lost attempt left no record, and used none up


async def _delivered(redis, keys, delivery: str) -> bool:
    state, _ = await store.status(redis, keys, delivery)
    return state == "delivered"


async def test_graceful_stop_hands_claimed_deliveries_back(redis, redis_url, keys, receiver):
    await put_task(redis, keys, "k2", receiver.url("/hang-once/1.5/x"))
    settings = make_settings(redis_url, webhook_timeout_s=5)
    async with running(redis, settings) as notifier:
        await publish(redis, keys, Completed(task_id="k2", video_url="v"))
        await wait_until(lambda: len(receiver.received()) == 1)
        assert notifier.dispatcher is not None
        notifier.dispatcher.grace_s = 0.1  # shorter than the receiver's answer
    delivery = receiver.received()[0].webhook_id
    [(member, _due)] = await redis.zrange(keys.webhook_schedule, 0, -1, withscores=True)
    assert member == delivery
    async with running(redis, settings, name="n2"):
        await wait_until(lambda: _delivered(redis, keys, delivery), timeout=5)
    assert len(receiver.received()) == 2
