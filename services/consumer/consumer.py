"""The reliable consumer: a Redis Streams consumer group with leases, reclaim, retries,
dead-lettering, safe trimming and graceful shutdown. Every service consumes through it.

Split into loops that each do one thing: read (XREADGROUP), handle (one task per entry, retries),
ack (batched XACK), lease (XCLAIM JUSTID every lease/3), reclaim (XAUTOCLAIM of entries idle past
the lease) and trim.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import anyio
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from services import metrics
from services.consumer import wire
from services.consumer.acks import Acker
from services.consumer.deadletter import dead_letter
from services.consumer.entry import Entry
from services.consumer.errors import LeavePending, Permanent
from services.consumer.group import GroupMember
from services.consumer.policy import ConsumerSettings, backoff_delay
from services.consumer.slots import Slots
from services.consumer.trim import trim_stream
from services.contracts import ErrorRecord, now
from services.keys import Keys

log = structlog.get_logger("wan22.consumer")

Handler = Callable[[Entry], Awaitable[None]]
# A batch handler gets every entry of one read and returns, per entry, None (done) or the error
# it failed with; failed entries then retry one by one. Fast handlers use it to pipeline their I/O.
BatchHandler = Callable[[list[Entry]], Awaitable[list[BaseException | None]]]


@dataclass
class Hooks:
    """Optional callbacks so a service can publish lifecycle events around retries."""

    on_retry: Callable[[Entry, ErrorRecord, float], Awaitable[None]] | None = None
    on_dead: Callable[[Entry, list[ErrorRecord], str], Awaitable[None]] | None = None
    max_attempts: Callable[[Entry], int] | None = None


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the group (and the stream) if missing; reads start at the stream's beginning so
    entries written before the first consumer started are not skipped."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class StreamConsumer:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        stream: str,
        group: str,
        name: str,
        handler: Handler | None,
        settings: ConsumerSettings | None = None,
        hooks: Hooks | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        slots: Slots | None = None,
        reads: bool = True,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        self.redis, self.keys, self.stream, self.group, self.name = redis, keys, stream, group, name
        self.handler, self.batch_handler = handler, batch_handler
        self.settings = settings or ConsumerSettings()
        self.hooks = hooks or Hooks()
        self.member = GroupMember(redis, keys, stream, group, name, self.settings)
        # reads=False: another reader claims new entries and `feed`s them (services.consumer.priority);
        # this consumer still handles, acks, extends leases, reclaims, trims and hands back.
        self.reads = reads
        # Entries claimed and not yet finished (queued for a worker or being handled).
        self._inflight: set[str] = set()
        self._queue_in, self._queue_out = anyio.create_memory_object_stream[list[Entry]](math.inf)
        self.slots = slots or Slots(self.settings.concurrency)
        self._idle = anyio.Event()
        self._idle.set()
        self._stop = anyio.Event()
        labels = (stream, group)
        self.acker = Acker(self.member, metrics.CONSUMER_ACKED.labels(*labels))
        self._m_retries = metrics.CONSUMER_RETRIES.labels(*labels)
        self._m_reclaimed = metrics.CONSUMER_RECLAIMED.labels(*labels)
        self._m_seconds = metrics.CONSUMER_HANDLER_SECONDS.labels(*labels)

    # ---- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; in-flight handlers get `grace_s` to finish (safe from any task)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if not await self._connect():
            task_status.started()
            return
        log.info("consumer.start", stream=self.stream, group=self.group, consumer=self.name)
        async with anyio.create_task_group() as loops:
            loops.start_soon(self.acker.run)
            loops.start_soon(self._lease_loop)
            loops.start_soon(self._reclaim_loop)
            loops.start_soon(self._trim_loop)
            async with anyio.create_task_group() as handlers:
                # A fixed pool of workers rather than a task per entry: spawning and scoping a task
                # costs more than a fast handler does.
                for _ in range(self.settings.concurrency):
                    handlers.start_soon(self._worker)
                task_status.started()
                with anyio.CancelScope() as read_scope:
                    loops.start_soon(self._cancel_on_stop, read_scope)
                    await (self._read_loop() if self.reads else anyio.sleep_forever())
                await self._drain(handlers)
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self.acker.flush()
                await self._hand_back()
            loops.cancel_scope.cancel()
        log.info("consumer.stopped", stream=self.stream, consumer=self.name)

    async def _connect(self) -> bool:
        """Create the group, waiting out a Redis that is not up yet; False if stopped meanwhile."""
        failures = 0
        while not self.stopping:
            try:
                await ensure_group(self.redis, self.stream, self.group)
                return True
            except RedisError as exc:
                failures = await self._redis_trouble("connect", exc, failures)
        return False

    async def _cancel_on_stop(self, scope: anyio.CancelScope) -> None:
        await self._stop.wait()
        scope.cancel()

    async def _drain(self, handlers: anyio.abc.TaskGroup) -> None:
        with anyio.move_on_after(self.settings.grace_s):
            await self._idle.wait()
        if self._inflight:
            log.warning("consumer.grace_expired", unfinished=len(self._inflight))
        handlers.cancel_scope.cancel()

    async def _hand_back(self) -> None:
        try:
            count = await self.member.hand_back()
            if count:
                log.info("consumer.handed_back", count=count)
        except RedisError as exc:
            log.warning("consumer.hand_back_failed", error=str(exc))

    # ---- read ------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        failures = 0
        while not self.stopping:
            await self._wait_for_slot()
            try:
                count = min(self.settings.batch, self.slots.free)
                entries = await wire.xreadgroup(
                    self.redis, self.group, self.name, {self.stream: ">"}, count, self.settings.block_ms
                )
                failures = 0
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # stream or group deleted under us: recreate
                    await ensure_group(self.redis, self.stream, self.group)
                    continue
                failures = await self._redis_trouble("read", exc, failures)
                continue
            except RedisError as exc:
                failures = await self._redis_trouble("read", exc, failures)
                continue
            if entries:
                self._dispatch(entries)

    async def _wait_for_slot(self) -> None:
        await self.slots.wait()

    async def _redis_trouble(self, where: str, exc: Exception, failures: int) -> int:
        failures += 1
        delay = backoff_delay(failures, 0.1, 5.0)
        log.warning("consumer.redis_error", where=where, error=str(exc), retry_in=round(delay, 2))
        await anyio.sleep(delay)
        return failures

    # ---- handle ----------------------------------------------------------------------------

    def feed(self, entries: list[Entry]) -> None:
        """Entries of this stream claimed for this consumer by another reader."""
        self._dispatch(entries)

    def _dispatch(self, entries: list[Entry]) -> None:
        entries = [entry for entry in entries if entry.id not in self._inflight]
        if not entries:
            return
        self.slots.take(len(entries))
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._inflight.update(entry.id for entry in entries)
        if self.batch_handler is not None:
            self._queue_in.send_nowait(entries)
        else:
            for entry in entries:
                self._queue_in.send_nowait([entry])

    async def _worker(self) -> None:
        async for entries in self._queue_out:
            if self.batch_handler is not None:
                await self._process_batch(entries)
            else:
                await self._process(entries[0])

    async def _process_batch(self, entries: list[Entry]) -> None:
        assert self.batch_handler is not None
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(entry_id=entries[0].id, task_id="")
        try:
            outcomes = await self.batch_handler(entries)
        except Exception as exc:
            outcomes = [exc] * len(entries)
        done = [entry for entry, outcome in zip(entries, outcomes, strict=True) if outcome is None]
        for entry in done:
            self.acker.ack(entry)
        self._m_seconds.observe((time.perf_counter() - started) / len(entries))
        self._release(entry.id for entry in done)
        for entry, outcome in zip(entries, outcomes, strict=True):
            if outcome is not None:
                await self._process(entry, outcome)

    async def _process(self, entry: Entry, first_error: BaseException | None = None) -> None:
        # Each worker has its own context: binding overwrites the previous entry's ids.
        structlog.contextvars.bind_contextvars(entry_id=entry.id, task_id=entry.task_id)
        started = time.perf_counter()
        try:
            await self._attempts(entry, first_error)
        except Exception as exc:
            # Bookkeeping or a hook failed (Redis down): leave it pending; a reclaim retries it.
            log.warning("consumer.left_pending", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._finished(entry, time.perf_counter() - started)

    def _finished(self, entry: Entry, seconds: float) -> None:
        self._m_seconds.observe(seconds)
        self._release([entry.id])

    def _release(self, ids: Iterable[str]) -> None:
        before = len(self._inflight)
        self._inflight.difference_update(ids)
        self.slots.give(before - len(self._inflight))
        if not self._inflight:
            self._idle.set()

    async def _call(self, entry: Entry, error: BaseException | None) -> None:
        """One attempt: re-raise the error a batch already got, or run the handler."""
        if error is not None:
            raise error
        if self.batch_handler is not None:
            [outcome] = await self.batch_handler([entry])
            if outcome is not None:
                raise outcome
        else:
            assert self.handler is not None
            await self.handler(entry)

    async def _attempts(self, entry: Entry, first_error: BaseException | None = None) -> None:
        limit = self.hooks.max_attempts(entry) if self.hooks.max_attempts else self.settings.max_attempts
        if entry.attempt > limit:
            await self._dead(entry, "exhausted")
            return
        while True:
            error, first_error = first_error, None
            try:
                await self._call(entry, error)
            except LeavePending as exc:
                log.info("consumer.left_pending", reason=str(exc))
                return
            except Permanent as exc:
                await self._fail(entry, exc)
                await self._dead(entry, exc.reason)
                return
            except Exception as exc:
                record = await self._fail(entry, exc)
                if entry.attempt > limit:
                    await self._dead(entry, "exhausted")
                    return
                await self._retry_later(entry, record)
            else:
                self.acker.ack(entry)
                return

    async def _fail(self, entry: Entry, exc: BaseException) -> ErrorRecord:
        record = ErrorRecord(at=now(), error=f"{type(exc).__name__}: {exc}", attempt=entry.attempt)
        await self.member.record(entry, record)
        log.warning("consumer.handler_failed", attempt=record.attempt, error=record.error)
        return record

    async def _retry_later(self, entry: Entry, record: ErrorRecord) -> None:
        self._m_retries.inc()
        delay = backoff_delay(record.attempt, self.settings.backoff_base_s, self.settings.backoff_max_s)
        if self.hooks.on_retry:
            await self.hooks.on_retry(entry, record, delay)
        await anyio.sleep(delay)

    async def _dead(self, entry: Entry, reason: str) -> None:
        if self.hooks.on_dead:
            await self.hooks.on_dead(entry, entry.history, reason)
        dlq_id = await dead_letter(self.redis, self.keys, self.group, entry, entry.history, reason)  # type: ignore[arg-type]
        if dlq_id is None:  # another delivery of it (a lease that ran out) got there first
            log.info("consumer.dead_letter_exists", reason=reason)
            return
        metrics.CONSUMER_DEAD.labels(self.stream, self.group, reason).inc()
        log.error("consumer.dead_lettered", reason=reason, dlq_id=dlq_id, attempts=len(entry.history))

    # ---- lease and reclaim -----------------------------------------------------------------

    async def _lease_loop(self) -> None:
        interval = self.settings.lease_s / 3
        while True:
            await anyio.sleep(interval)
            ids = [*self._inflight, *self.acker.held()]  # finished ones stay pending until acked
            if not ids:
                continue
            try:
                lost = await self.member.extend(ids)
            except Exception as exc:  # a missed extension is retried at the next tick
                log.warning("consumer.lease_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            if lost:
                log.warning("consumer.lease_lost", entries=sorted(lost))

    async def _reclaim_loop(self) -> None:
        interval = max(0.05, self.settings.lease_s / 2)
        sweeps = 0
        while True:
            await anyio.sleep(interval)
            if self.stopping:
                return
            try:
                await self._reclaim_once()
                sweeps += 1
                if sweeps % 20 == 0:
                    await self.member.forget_idle_consumers()
            except Exception as exc:  # housekeeping must never stop the consumer
                log.warning("consumer.reclaim_failed", error=f"{type(exc).__name__}: {exc}")

    async def _reclaim_once(self) -> None:
        cursor = "0-0"
        while self.slots.free > 0:
            cursor, entries = await self.member.autoclaim(cursor, self.slots.free)
            held = set(self.acker.held())
            for entry in entries:
                if entry.id in self._inflight or entry.id in held:  # ours: being handled or acked
                    continue
                self._m_reclaimed.inc()
                log.info("consumer.reclaimed", entry_id=entry.id, deliveries=entry.deliveries)
                self._dispatch([entry])
            if cursor == "0-0":
                return

    # ---- trim ------------------------------------------------------------------------------

    async def _trim_loop(self) -> None:
        if not math.isfinite(self.settings.trim_interval_s) or self.settings.trim_interval_s <= 0:
            return
        while True:
            await anyio.sleep(self.settings.trim_interval_s)
            try:
                removed = await trim_stream(self.redis, self.stream, self.settings.retain_s)
                if removed:
                    log.debug("consumer.trimmed", removed=removed)
            except Exception as exc:  # housekeeping must never stop the consumer
                log.warning("consumer.trim_failed", error=f"{type(exc).__name__}: {exc}")
