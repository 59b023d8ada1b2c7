"""End to end: events on `wan22:events` → signed POSTs to a real receiver."""

from __future__ import annotations

import base64
import itertools
import time

import anyio
import pytest

from services.consumer import list_dead
from services.contracts import Completed, Failed, Rejected, Retrying, Started
from services.keys import NOTIFIER_GROUP
from services.notifier import dlq, store, subscriptions
from services.notifier.signing import generate_secret
from tests.notifier.conftest import SECRET, make_settings, publish, put_task, running, wait_until


async def test_completed_and_failed_arrive_signed_with_the_documented_body(redis, redis_url, keys, receiver):
    url = receiver.url("/ok/task")
    await put_task(redis, keys, "t-ok", url, task="t2v-A14B", metadata={"order": "42"}, updated_at=1_700_000_100.0)
    await put_task(redis, keys, "t-bad", url, task="ti2v-5B")
    async with running(redis, make_settings(redis_url)):
        await publish(redis, keys, Completed(task_id="t-ok", video_url="s3://b/t-ok.mp4", poster_url="s3://b/t-ok.jpg"))
        await publish(redis, keys, Failed(task_id="t-bad", error="CUDA out of memory", attempts=3))
        await wait_until(lambda: len(receiver.received("/ok/")) == 2)

    bodies = {r.verify(SECRET)["data"]["task_id"]: r.verify(SECRET) for r in receiver.received("/ok/")}
    done = bodies["t-ok"]
    assert done["type"] == "task.completed" and done["timestamp"].endswith("Z")
    data = done["data"]
    assert data["event"] == "completed" and data["status"] == "completed" and data["task"] == "t2v-A14B"
    assert (data["video_url"], data["poster_url"], data["error"]) == ("s3://b/t-ok.mp4", "s3://b/t-ok.jpg", "")
    assert data["metadata"] == {"order": "42"}
    assert data["created_at"] == "2023-11-14T22:13:20.000Z" and data["updated_at"] == "2023-11-14T22:15:00.000Z"
    assert set(data) >= {"event_at", "request_id", "attempt", "field", "reason"}
    failed = bodies["t-bad"]["data"]
    assert failed["status"] == "failed" and failed["error"] == "CUDA out of memory" and failed["attempt"] == 3
    request = receiver.received("/ok/")[0]
    assert request.headers["content-type"] == "application/json"
    assert request.webhook_id.startswith("msg_")


async def test_task_url_gets_started_and_terminal_events_only(redis, redis_url, keys, receiver):
    await put_task(redis, keys, "t1", receiver.url("/ok/own"))
    async with running(redis, make_settings(redis_url)):
        await publish(redis, keys, Started(task_id="t1"))
        await publish(redis, keys, Retrying(task_id="t1", attempt=1, max_attempts=3, error="x"))
        await publish(redis, keys, Completed(task_id="t1", video_url="v"))
        await wait_until(lambda: len(receiver.received()) == 2)
        await anyio.sleep(0.2)
    assert sorted(r.verify(SECRET)["type"] for r in receiver.received()) == ["task.completed", "task.started"]


async def test_finished_deliveries_are_kept_for_the_configured_time(redis, redis_url, keys, receiver):
    """The record the task page reads outlives the attempt by `WAN22_WEBHOOK_RECORD_TTL_S`."""
    await put_task(redis, keys, "t-kept", receiver.url("/ok/kept"))
    async with running(redis, make_settings(redis_url, webhook_record_ttl_s=900)):
        await publish(redis, keys, Completed(task_id="t-kept", video_url="v"))
        await wait_until(lambda: len(receiver.received()) == 1)
        delivery = receiver.received()[0].webhook_id
        await wait_until(lambda: _status_is(redis, keys, delivery, "delivered"))
    assert 800 < await redis.ttl(keys.webhook_delivery(delivery)) <= 900


async def test_subscriptions_choose_events_and_sign_with_their_own_secret(redis, redis_url, keys, receiver):
    sub = await subscriptions.add(redis, keys, receiver.url("/ok/sub"), ["retrying", "rejected"], None)
    await put_task(redis, keys, "t2")
    async with running(redis, make_settings(redis_url)):
        await publish(redis, keys, Retrying(task_id="t2", attempt=1, max_attempts=3, error="flaky gpu"))
        await publish(redis, keys, Completed(task_id="t2", video_url="v"))
        await publish(redis, keys, Rejected(task_id="never-stored", error="prompt too long", field="prompt"))
        await wait_until(lambda: len(receiver.received()) == 2)
        await anyio.sleep(0.2)
    bodies = [r.verify(sub.secrets[0]) for r in receiver.received()]
    assert sorted(b["type"] for b in bodies) == ["task.rejected", "task.retrying"]
    rejected = next(b["data"] for b in bodies if b["type"] == "task.rejected")
    assert rejected == rejected | {"task_id": "never-stored", "status": "rejected", "field": "prompt", "metadata": {}}


async def test_secret_rotation_sends_a_signature_per_secret(redis, redis_url, keys, receiver):
    old, new = generate_secret(), generate_secret()
    await put_task(redis, keys, "t3", receiver.url("/ok/rot"))
    async with running(redis, make_settings(redis_url, webhook_secret=f"{new},{old}")):
        await publish(redis, keys, Completed(task_id="t3", video_url="v"))
        await wait_until(lambda: len(receiver.received()) == 1)
    request = receiver.received()[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    request.verify(old), request.verify(new)


async def test_flaky_receiver_three_attempts_same_id_following_the_schedule(redis, redis_url, keys, receiver):
    settings = make_settings(redis_url, webhook_schedule="0,0.5,1.0")
    await put_task(redis, keys, "t4", receiver.url("/flaky/2/x"))
    async with running(redis, settings, name="first"):
        await publish(redis, keys, Completed(task_id="t4", video_url="v"))
        await wait_until(lambda: len(receiver.received()) == 1)
    # Restarted between attempts: the schedule is in Redis, not in the stopped process.
    async with running(redis, settings, name="second"):
        await wait_until(lambda: len(receiver.received()) == 3)
        delivery = receiver.received()[0].webhook_id
        await wait_until(lambda: _status_is(redis, keys, delivery, "delivered"))
    requests = receiver.received()
    assert len({r.webhook_id for r in requests}) == 1
    assert len({r.headers["webhook-timestamp"] for r in requests}) >= 1
    for r in requests:
        r.verify(SECRET)
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    # Not before each delay; the upper bounds leave room for a slow or loaded machine.
    assert 0.45 <= gaps[0] <= 2.0 and 0.9 <= gaps[1] <= 2.5, gaps
    _, attempts = await store.status(redis, keys, delivery)
    assert [a.status for a in attempts] == [500, 500, 200]


async def _status_is(redis, keys, delivery: str, expected: str) -> bool:
    state, _ = await store.status(redis, keys, delivery)
    return state == expected


async def test_retry_after_is_honoured(redis, redis_url, keys, receiver):
    await put_task(redis, keys, "t5", receiver.url("/retry-after/1/x"))
    async with running(redis, make_settings(redis_url, webhook_schedule="0,0.05,0.05")):
        await publish(redis, keys, Completed(task_id="t5", video_url="v"))
        await wait_until(lambda: len(receiver.received()) == 2)
    first, second = receiver.received()
    assert second.at - first.at >= 0.95


async def test_always_failing_receiver_is_dead_lettered_then_replayed(redis, redis_url, keys, receiver):
    await put_task(redis, keys, "t6", receiver.url("/fail/x"))
    async with running(redis, make_settings(redis_url, webhook_schedule="0,0.1,0.1")):
        await publish(redis, keys, Failed(task_id="t6", error="boom"))
        await wait_until(lambda: redis.xlen(keys.webhook_dlq))
        [(dlq_id, letter)] = await dlq.list_dead(redis, keys)
        assert letter.reason == "exhausted" and letter.delivery.task_id == "t6"
        assert [(a.status, a.error[:8]) for a in letter.attempts] == [(500, "HTTP 500")] * 3
        assert all(a.at > 0 and a.seconds > 0 for a in letter.attempts)
        receiver.fixed = True
        assert await dlq.replay(redis, keys, dlq_id) == letter.delivery.id
        await wait_until(lambda: len(receiver.received()) == 4)
        await wait_until(lambda: _status_is(redis, keys, letter.delivery.id, "delivered"))
    assert await redis.xlen(keys.webhook_dlq) == 0
    assert {r.webhook_id for r in receiver.received()} == {letter.delivery.id}
    receiver.received()[-1].verify(SECRET)


async def test_410_gone_disables_the_subscription(redis, redis_url, keys, receiver):
    sub = await subscriptions.add(redis, keys, receiver.url("/gone/x"), ["completed"], None)
    await put_task(redis, keys, "t7")
    async with running(redis, make_settings(redis_url)):
        await publish(redis, keys, Completed(task_id="t7", video_url="v"))
        await wait_until(lambda: len(receiver.received()) == 1)
        await wait_until(lambda: _disabled(redis, keys, sub.id))
        await publish(redis, keys, Completed(task_id="t7", video_url="v2"))
        await anyio.sleep(1.3)  # past the subscription cache
        await publish(redis, keys, Completed(task_id="t7", video_url="v3"))
        await anyio.sleep(0.3)
    assert len(receiver.received()) == 1  # no retries, nothing after the 410
    assert await redis.xlen(keys.webhook_dlq) == 0


async def _disabled(redis, keys, sub_id: str) -> bool:
    sub = await subscriptions.get(redis, keys, sub_id)
    return sub is not None and not sub.enabled and "410" in sub.disabled_reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://localhost:{port}/ok/x", "loopback"),
        ("http://127.0.0.1:{port}/ok/x", "loopback"),
        ("http://10.0.0.1:{port}/ok/x", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[::1]:{port}/ok/x", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/ok/x", "loopback"),
        ("ftp://example.com/x", "scheme"),
    ],
)
async def test_ssrf_targets_are_refused_without_connecting(redis, redis_url, keys, receiver, url, reason):
    url = url.format(port=receiver.port)
    await put_task(redis, keys, "t8", url)
    async with running(redis, make_settings(redis_url, webhook_allow_networks=[])) as notifier:
        started = time.monotonic()
        await publish(redis, keys, Completed(task_id="t8", video_url="v"))
        await wait_until(lambda: redis.xlen(keys.webhook_dlq))
        refused_s = time.monotonic() - started
        assert notifier.dispatcher is not None and notifier.dispatcher.pool.created == 0
    assert refused_s < 1.5  # refused at once: the attempt's timeout is 2 s
    [(_, letter)] = await dlq.list_dead(redis, keys)
    assert letter.reason == "refused" and len(letter.attempts) == 1
    assert letter.attempts[0].status == 0 and reason in letter.attempts[0].error
    assert receiver.connections == 0


async def test_slow_receiver_does_not_delay_a_fast_one(redis, redis_url, keys, receiver):
    from tests.notifier.receiver import Receiver

    fast = Receiver().start()
    try:
        settings = make_settings(redis_url, webhook_concurrency=16, webhook_per_endpoint=2, webhook_timeout_s=12)
        await subscriptions.add(redis, keys, receiver.url("/slow/10/x"), ["started"], None)
        await subscriptions.add(redis, keys, fast.url("/ok/fast"), ["completed"], None)
        async with running(redis, settings) as notifier:
            for i in range(40):  # the slow receiver's deliveries are due first
                await publish(redis, keys, Started(task_id=f"s{i}"))
            await wait_until(lambda: len(receiver.received()) == 2)
            started = time.monotonic()
            for i in range(20):
                await publish(redis, keys, Completed(task_id=f"f{i}", video_url="v"))
            await wait_until(lambda: len(fast.received()) == 20, timeout=8)
            elapsed = time.monotonic() - started
            assert len(receiver.received()) == 2  # the slow receiver is still on its first round
            assert notifier.dispatcher is not None
            notifier.dispatcher.grace_s = 0.1
    finally:
        fast.close()
    assert elapsed < 8, elapsed  # before the slow receiver answers anything (10 s)


async def test_an_undecodable_event_is_dead_lettered_and_the_rest_delivered(redis, redis_url, keys, receiver):
    await put_task(redis, keys, "t9", receiver.url("/ok/x"))
    async with running(redis, make_settings(redis_url)):
        await redis.xadd(keys.events, {"type": "completed", "task_id": "t9", "payload": "{not json"})
        flat = [b"type", b"completed", b"task_id", b"t9", b"payload", b"\x00\xff not json", b"\xff", b""]
        await redis.execute_command("XADD", keys.events, "*", *flat)
        await publish(redis, keys, Completed(task_id="t9", video_url="v"))
        await wait_until(lambda: len(receiver.received()) == 1)
        await wait_until(lambda: _equals(redis.xlen(keys.dlq), 2))
        await wait_until(lambda: _equals(_pending(redis, keys), 0))  # acks are batched
    letters = [letter for _, letter in await list_dead(redis, keys)]
    # Written as each is found (the text one by its handler, the binary one at read): either order.
    [text] = [letter for letter in letters if letter.raw_fields is None]
    [binary] = [letter for letter in letters if letter.raw_fields is not None]
    assert text.reason == binary.reason == "undecodable"
    assert [base64.b64decode(f.name_b64) for f in binary.raw_fields or []] == flat[::2]


async def _equals(value, expected) -> bool:
    return await value == expected


async def _pending(redis, keys) -> int:
    return int((await redis.xpending(keys.events, NOTIFIER_GROUP))["pending"])


async def test_a_small_concurrency_keeps_claiming(redis, redis_url, keys, receiver):
    await subscriptions.add(redis, keys, receiver.url("/ok/small"), ["completed"], None)
    async with running(redis, make_settings(redis_url, webhook_concurrency=2, webhook_per_endpoint=1)):
        for i in range(30):
            await publish(redis, keys, Completed(task_id=f"c{i}", video_url="v"))
        await wait_until(lambda: len(receiver.received()) == 30)
