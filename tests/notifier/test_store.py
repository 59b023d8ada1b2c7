"""Delivery records: idempotent fan-out, atomic claims, leases."""

from __future__ import annotations

import anyio

from services import contracts
from services.consumer import Entry
from services.contracts import Completed, now
from services.notifier import dlq, store
from services.notifier.fanout import FanOut
from services.notifier.schedule import RetrySchedule
from services.notifier.store import Delivery
from services.notifier.subscriptions import SubscriptionCache, add
from tests.notifier.conftest import put_task


def _delivery(i: int) -> Delivery:
    return Delivery(
        id=f"msg_{i}", target="task", url="http://x/", event="completed", task_id=f"t{i}", body="{}", created_at=0
    )


async def test_fanning_out_the_same_event_twice_creates_its_deliveries_once(redis, keys):
    await put_task(redis, keys, "t1", "http://example.com/hook")
    await add(redis, keys, "http://example.com/sub", ["completed"], None)
    woken = []
    fanout = FanOut(redis, keys, SubscriptionCache(redis, keys), RetrySchedule((0.0,)), lambda: woken.append(1))
    fields = contracts.event_entry(Completed(task_id="t1", video_url="v"))
    entry = Entry(keys.events, "1-0", {k: v if isinstance(v, str) else v.decode() for k, v in fields.items()})
    assert await fanout([entry]) == [None]
    assert await fanout([entry]) == [None]  # redelivered after a crash before the ack
    assert await redis.zcard(keys.webhook_schedule) == 2
    assert woken == [1]


async def test_concurrent_claims_never_hand_out_a_delivery_twice(redis, keys):
    await store.create(redis, keys, [_delivery(i) for i in range(200)], now())
    results: list[list[str]] = []

    async def claimer() -> None:
        t = now()
        claimed = await store.claim(redis, keys, t, t + 60, 30)
        results.append([c.delivery.id for c in claimed])

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(claimer)
    ids = [i for batch in results for i in batch]
    assert len(ids) == len(set(ids)) == 200
    assert await store.claim(redis, keys, now(), now() + 60, 10) == []  # all leased


async def test_an_expired_lease_makes_the_delivery_due_again_and_counts_as_lost(redis, keys):
    await store.create(redis, keys, [_delivery(1)], now())
    [first] = await store.claim(redis, keys, now(), now() + 0.2, 10)
    assert first.lost == 0
    await anyio.sleep(0.3)
    [again] = await store.claim(redis, keys, now(), now() + 60, 10)
    assert again.delivery.id == first.delivery.id and again.lost == 1
    await store.put_back(redis, keys, {again.delivery.id: now()})
    [third] = await store.claim(redis, keys, now(), now() + 60, 10)
    assert third.lost == 1  # putting back does not count as lost


async def test_finished_deliveries_leave_the_schedule_and_drop_their_body(redis, keys):
    await store.create(redis, keys, [_delivery(1)], now())
    [c] = await store.claim(redis, keys, now(), now() + 60, 10)
    await store.finish(redis, keys, c, "delivered")
    assert await redis.zcard(keys.webhook_schedule) == 0
    assert not await redis.hexists(keys.webhook_delivery("msg_1"), "record")
    assert 0 < await redis.ttl(keys.webhook_delivery("msg_1")) <= store.DONE_TTL_S
    assert await store.create(redis, keys, [_delivery(1)], now()) == 0  # still idempotent


async def test_a_dead_letter_applied_twice_is_written_once(redis, keys):
    await store.create(redis, keys, [_delivery(1)], now())
    [c] = await store.claim(redis, keys, now(), now() + 60, 10)
    outcome = store.Outcome("dead", c, dlq.letter_payload(c, "exhausted"))
    assert len(await store.apply(redis, keys, [outcome])) == 1
    assert await store.apply(redis, keys, [outcome]) == []  # e.g. re-sent after a cancelled call
    assert await redis.xlen(keys.webhook_dlq) == 1


def test_deferred_deliveries_are_spread_over_the_endpoint_drain_time():
    from services.notifier.endpoint import DEFER_S, Endpoint

    fast, slow = Endpoint(latency=0.01), Endpoint(active=8, latency=2.0)
    assert fast.defer_delay(8) == DEFER_S
    delays = [slow.defer_delay(8) for _ in range(16)]
    assert delays == sorted(delays) and delays[-1] == 2.0 * (8 + 16) / 8
