"""The dispatcher: claims due deliveries from the durable schedule and sends them with bounded
concurrency, overall (`webhook_concurrency`) and per endpoint (`webhook_per_endpoint`).

A claimed delivery whose endpoint is busy waits in that endpoint's short backlog without taking
a send slot; when the backlog is full it goes back to the schedule for a moment. So a slow
receiver holds at most its own slots and backlog, and deliveries to everyone else keep flowing.

Attempts run on `webhook_concurrency` long-lived workers fed through a memory stream: spawning a
task per attempt costs about 40 µs of CPU, a tenth of the attempt itself.
"""

from __future__ import annotations

import math

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services import metrics
from services.consumer import backoff_delay
from services.contracts import now
from services.egress import EgressRefused
from services.keys import Keys
from services.notifier import dlq, store
from services.notifier.clients import ClientPool
from services.notifier.delivery import Result, attempt
from services.notifier.endpoint import Endpoint
from services.notifier.pinned import Origin, origin_of
from services.notifier.recorder import Recorder
from services.notifier.schedule import RetrySchedule
from services.notifier.settings import NotifierSettings
from services.notifier.store import TASK_TARGET, Claimed, Outcome
from services.notifier.subscriptions import SubscriptionCache, disable

log = structlog.get_logger("wan22.notifier")

BATCH = 256  # most deliveries claimed per round trip
BACKLOG_ROUNDS = 2  # an endpoint's backlog holds this many rounds of its concurrency
MAX_LOST = 3  # claims that ended without a recorded attempt before the delivery is given up
INVALID: Origin = ("", "", 0)
Job = tuple[Claimed, Endpoint, Origin, bool]  # a delivery to attempt: endpoint, origin, from its backlog


class Dispatcher:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: NotifierSettings,
        task_secrets: list[str],
        subs: SubscriptionCache,
        *,
        poll_s: float = 1.0,
        grace_s: float = 10.0,
    ) -> None:
        self.redis, self.keys, self.subs, self.task_secrets = redis, keys, subs, task_secrets
        self.schedule = RetrySchedule(settings.schedule, settings.webhook_jitter)
        self.timeout, self.poll_s, self.grace_s = (
            settings.webhook_timeout_s,
            poll_s,
            min(grace_s, settings.webhook_timeout_s),
        )
        self.lease_s = 2 * self.timeout + 1  # covers a backlog wait plus the attempt itself
        self.concurrency, self.per_endpoint = settings.webhook_concurrency, settings.webhook_per_endpoint
        self._low_water = max(1, min(BATCH, self.concurrency // 4))
        self.pool = ClientPool(settings.allow_networks, self.timeout, self.per_endpoint)
        self._endpoints: dict[Origin, Endpoint] = {}
        self._held: set[str] = set()  # claimed and not yet recorded (sending or in a backlog)
        self._active = 0
        self._wake, self._slot, self._stop, self._idle = anyio.Event(), anyio.Event(), anyio.Event(), anyio.Event()
        self._jobs: MemoryObjectSendStream[Job] | None = None
        self.recorder = Recorder(redis, keys, self._recorded, done_ttl_s=settings.webhook_record_ttl_s)

    def _recorded(self, ids: list[str]) -> None:
        """Outcomes are stored: their claims count no more against the concurrency."""
        self._held.difference_update(ids)
        self._slot.set()

    def wake(self) -> None:
        """New deliveries are due (saves waiting for the next poll)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._slot.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, receive = anyio.create_memory_object_stream[Job](math.inf)  # never more than the workers
        try:
            async with send, receive, anyio.create_task_group() as tg:
                self._jobs = send
                for _ in range(self.concurrency):
                    tg.start_soon(self._worker, receive)
                tg.start_soon(self._housekeeping)
                tg.start_soon(self.recorder.run)
                task_status.started()
                await self._claim_loop()
                await self._drain()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._flush_outcomes()
                await self._put_back_held()
                await self.pool.aclose()

    # ---- claim -----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            free = min(self.concurrency - len(self._held), BATCH)
            if free < self._low_water and self._held:  # claim in batches, not one slot at a time
                self._slot = anyio.Event()
                await self._slot.wait()
                continue
            self._wake = anyio.Event()
            try:
                full = await self._claim(free)
                failures = 0
                if not full:
                    await self._sleep_until_due()
            except RedisError as exc:
                failures += 1
                log.warning("notifier.redis_error", where="claim", error=str(exc))
                await anyio.sleep(backoff_delay(failures, 0.1, 5.0))

    async def _claim(self, limit: int) -> bool:
        """Claim and dispatch up to `limit`; True when more may be due right away."""
        t = now()
        claimed = await store.claim(self.redis, self.keys, t, t + self.lease_s, limit)
        deferred: dict[str, float] = {}
        for c in claimed:
            delay = self._dispatch(c)
            if delay is not None:
                deferred[c.delivery.id] = t + delay
        for ep in self._endpoints.values():
            ep.deferred = 0
        await store.put_back(self.redis, self.keys, deferred)
        return len(claimed) == limit

    async def _sleep_until_due(self) -> None:
        due = await store.next_due(self.redis, self.keys)
        delay = self.poll_s if due is None else min(self.poll_s, due - now())
        if delay > 0:
            with anyio.move_on_after(delay):
                await self._wake.wait()

    def _dispatch(self, c: Claimed) -> float | None:
        """Start it, or queue it in its endpoint's backlog; else the delay to put it back with."""
        try:
            origin = origin_of(c.delivery.url)
        except EgressRefused:
            origin = INVALID  # the attempt records the refusal
        ep = self._endpoints.setdefault(origin, Endpoint())
        if ep.active < self.per_endpoint:
            self._start(c, ep, origin, from_backlog=False)
        elif len(ep.backlog) < self.per_endpoint * BACKLOG_ROUNDS:
            ep.backlog.append(c)
            self._held.add(c.delivery.id)
        else:
            return ep.defer_delay(self.per_endpoint)
        return None

    def _start(self, c: Claimed, ep: Endpoint, origin: Origin, *, from_backlog: bool) -> None:
        assert self._jobs is not None
        ep.active += 1
        self._active += 1
        self._held.add(c.delivery.id)
        self._jobs.send_nowait((c, ep, origin, from_backlog))

    # ---- deliver ---------------------------------------------------------------------------

    async def _worker(self, jobs: MemoryObjectReceiveStream[Job]) -> None:
        async for c, ep, origin, from_backlog in jobs:
            await self._deliver(c, ep, origin, from_backlog)

    async def _deliver(self, c: Claimed, ep: Endpoint, origin: Origin, from_backlog: bool) -> None:
        try:
            if from_backlog:  # it waited: renew the lease before the attempt
                await store.extend(self.redis, self.keys, c.delivery.id, now() + self.lease_s)
            seconds = await self._attempt(c)
            if seconds is not None:
                ep.latency = seconds if not ep.latency else 0.8 * ep.latency + 0.2 * seconds
        except Exception as exc:  # Redis trouble: the lease runs out and the delivery comes back
            log.warning("notifier.attempt_aborted", delivery=c.delivery.id, error=f"{type(exc).__name__}: {exc}")
            self._held.discard(c.delivery.id)
        finally:
            ep.active -= 1
            self._active -= 1
            self._slot.set()
            if not self._active:
                self._idle.set()
        self._next_from_backlog(ep, origin)  # not reached when cancelled

    def _next_from_backlog(self, ep: Endpoint, origin: Origin) -> None:
        if ep.backlog and not self._stop.is_set():
            self._start(ep.backlog.popleft(), ep, origin, from_backlog=True)
        elif not ep.active and not ep.backlog:
            self._endpoints.pop(origin, None)

    async def _attempt(self, c: Claimed) -> float | None:
        """One attempt; its outcome goes to the recorder (which releases the claim). Returns how
        long the attempt took, None when there was none."""
        if c.lost >= MAX_LOST:
            self._dead(c, "lost")
            return None
        secrets = await self._secrets_for(c)
        if secrets is None:
            self.recorder.add(Outcome("finish", c, "dropped"))
            metrics.WEBHOOK_DELIVERIES.labels("dropped").inc()
            log.info("notifier.dropped", delivery=c.delivery.id, target=c.delivery.target, reason="no subscription")
            return None
        result = await attempt(self.pool, c.delivery, secrets, self.timeout)
        c.attempts.append(result.attempt)
        metrics.WEBHOOK_SECONDS.observe(result.attempt.seconds)
        await self._decide(c, result)
        return result.attempt.seconds

    async def _decide(self, c: Claimed, result: Result) -> None:
        d, a = c.delivery, result.attempt
        fields = {"delivery": d.id, "task_id": d.task_id, "target": d.target, "attempt": len(c.attempts)}
        if result.ok:
            self.recorder.add(Outcome("finish", c, "delivered"))
            metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
            log.debug("notifier.delivered", status=a.status, seconds=round(a.seconds, 3), **fields)
        elif result.gone:
            await self._gone(c)
        elif result.refused:
            metrics.WEBHOOK_DELIVERIES.labels("refused").inc()
            log.warning("notifier.refused", error=a.error, **fields)
            self._dead(c, "refused")
        else:
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            delay = self.schedule.next_delay(len(c.attempts), result.retry_after)
            log.warning("notifier.attempt_failed", status=a.status, error=a.error, retry_in=delay, **fields)
            if delay is None:
                self._dead(c, "exhausted")
            else:
                self.recorder.add(Outcome("retry", c, now() + delay))

    async def _gone(self, c: Claimed) -> None:
        """410: the receiver asks never to be called again; a subscription is disabled."""
        self.recorder.add(Outcome("finish", c, "gone"))
        metrics.WEBHOOK_DELIVERIES.labels("gone").inc()
        if c.delivery.target != TASK_TARGET:
            await disable(self.redis, self.keys, c.delivery.target, "receiver answered 410 Gone")
            self.subs.invalidate()
        log.warning("notifier.gone", delivery=c.delivery.id, target=c.delivery.target, url=c.delivery.url)

    def _dead(self, c: Claimed, reason: str) -> None:
        self.recorder.add(Outcome("dead", c, dlq.letter_payload(c, reason)))
        metrics.WEBHOOK_DEAD.labels(reason).inc()
        log.error("notifier.dead_lettered", delivery=c.delivery.id, task_id=c.delivery.task_id, reason=reason)

    async def _secrets_for(self, c: Claimed) -> list[str] | None:
        if c.delivery.target == TASK_TARGET:
            return self.task_secrets
        sub = (await self.subs.get()).get(c.delivery.target)
        return sub.secrets if sub is not None and sub.enabled else None

    # ---- shutdown and housekeeping ---------------------------------------------------------

    async def _drain(self) -> None:
        """Backlogged deliveries go back at once; attempts in flight get `grace_s` to finish."""
        waiting = [c.delivery.id for ep in self._endpoints.values() for c in ep.backlog]
        for ep in self._endpoints.values():
            ep.backlog.clear()
        try:
            await store.put_back(self.redis, self.keys, dict.fromkeys(waiting, now()))
            self._held.difference_update(waiting)
        except RedisError as exc:  # they stay held; the final put-back tries again
            log.warning("notifier.put_back_failed", error=str(exc), count=len(waiting))
        if self._active:
            self._idle = anyio.Event()
            with anyio.move_on_after(self.grace_s):
                await self._idle.wait()

    async def _flush_outcomes(self) -> None:
        try:
            await self.recorder.flush()
        except RedisError as exc:
            log.warning("notifier.record_failed", error=str(exc))

    async def _put_back_held(self) -> None:
        try:
            await store.put_back(self.redis, self.keys, dict.fromkeys(sorted(self._held), now()))
        except RedisError as exc:
            log.warning("notifier.put_back_failed", error=str(exc), count=len(self._held))
        self._held.clear()

    async def _housekeeping(self) -> None:
        while True:
            await anyio.sleep(5)
            try:
                metrics.WEBHOOK_SCHEDULED.set(await store.scheduled(self.redis, self.keys))
            except RedisError as exc:
                log.warning("notifier.redis_error", where="housekeeping", error=str(exc))
            await self.pool.close_idle()
