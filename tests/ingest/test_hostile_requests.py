"""Hostile entries on the requests stream through a running ingest process: any bytes in field
names and values, repeated names, empty and enormous entries. Every entry gets exactly one answer
(`accepted` or `rejected`, matched by `request_id`), the process stays up, nothing stays pending;
also when ingest is SIGKILLed in the middle of a burst and restarted (the reclaim path)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.keys import INGEST_GROUP, Keys
from tests.ingest.conftest import MODELS_TOML
from tests.redis_server import RedisServer, free_port
from tests.services_proc import ServiceProcess

FUZZ_ENTRIES = 10_000  # at least this many raw entries over all examples

RawEntry = list[tuple[bytes, bytes]]


class Ingest:
    """One ingest process under its own key prefix, so no other test's ingest reads its stream."""

    def __init__(self, redis_server: RedisServer, base: Path, prefix: str) -> None:
        self.keys = Keys(prefix=prefix)
        self.redis = redis_sync.Redis.from_url(redis_server.url)  # bytes in, bytes out
        (base / "models.toml").write_text(MODELS_TOML)
        self.base, self.url_of_redis = base, redis_server.url
        self.proc: ServiceProcess | None = None
        self.url = ""
        self.cursor = b"0-0"
        self.answers: Counter[str] = Counter()

    def start(self) -> None:
        port = free_port()
        env = {
            "WAN22_REDIS_URL": self.url_of_redis,
            "WAN22_PREFIX": self.keys.prefix,
            "WAN22_HTTP_HOST": "127.0.0.1",
            "WAN22_HTTP_PORT": str(port),
            "WAN22_MODELS": str(self.base / "models.toml"),
            "WAN22_MAX_BODY_BYTES": "65536",
            "WAN22_MAX_QUEUE_LAG": "1000000",
            "WAN22_LEASE_MS": "1500",
        }
        self.proc = ServiceProcess(["ingest"], env, self.base / f"ingest-{port}.log").start()
        self.url = f"http://127.0.0.1:{port}"
        self.proc.wait_http(self.url + "/healthz")

    def alive(self) -> bool:
        assert self.proc is not None and self.proc.proc is not None
        return self.proc.proc.poll() is None and httpx.get(self.url + "/healthz").status_code == 200

    def send(self, entries: list[RawEntry]) -> list[str]:
        pipe = self.redis.pipeline(transaction=False)
        for fields in entries:
            pipe.execute_command("XADD", self.keys.requests, "*", *(part for pair in fields for part in pair))
        return [entry_id.decode() for entry_id in pipe.execute()]

    def collect_answers(self) -> None:
        """Counts `accepted`/`rejected` events per request id, reading on from the last one seen."""
        while reply := self.redis.xread({self.keys.events: self.cursor}, count=5000):
            for _, rows in reply:
                for entry_id, fields in rows:
                    self.cursor = entry_id
                    if fields.get(b"type") in (b"accepted", b"rejected"):
                        self.answers[json.loads(fields[b"payload"])["request_id"]] += 1

    def wait_answered(self, ids: list[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.answers[i] for i in ids):
            assert time.monotonic() < deadline, f"{sum(not self.answers[i] for i in ids)} entries unanswered"
            time.sleep(0.05)
            self.collect_answers()

    def pending(self) -> int:
        return int(self.redis.xpending(self.keys.requests, INGEST_GROUP)["pending"])

    def wait_nothing_pending(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pending():
            assert time.monotonic() < deadline, f"{self.pending()} entries still pending"
            time.sleep(0.05)


def make_ingest(redis_server: RedisServer, tmp_path_factory, prefix: str) -> Iterator[Ingest]:
    ingest = Ingest(redis_server, tmp_path_factory.mktemp(prefix), prefix)
    ingest.start()
    yield ingest
    assert ingest.proc is not None
    ingest.proc.stop()
    ingest.redis.close()


@pytest.fixture(scope="module")
def ingest(redis_server: RedisServer, tmp_path_factory) -> Iterator[Ingest]:
    yield from make_ingest(redis_server, tmp_path_factory, "hostile")


@pytest.fixture(scope="module")
def killable_ingest(redis_server: RedisServer, tmp_path_factory) -> Iterator[Ingest]:
    yield from make_ingest(redis_server, tmp_path_factory, "hostile-kill")


NAMES = [b"task", b"prompt", b"payload", b"task_id", b"size", b"seed", b"type", b"metadata", b"guide_scale", b"_x"]
VALUES = [b"demo", b"64*64", b"7", b"{}", b'{"task":"demo","prompt":"p"}', b"\x00\xff not json", b"[1,2]"]
names = st.sampled_from(NAMES) | st.binary(max_size=12)
values = st.sampled_from(VALUES) | st.binary(max_size=48) | st.text(max_size=24).map(str.encode)
raw_entries = st.lists(st.tuples(names, values), min_size=1, max_size=6)
valid_entries = st.text(max_size=40).map(lambda prompt: [(b"task", b"demo"), (b"prompt", prompt.encode())])
bursts = st.lists(raw_entries | valid_entries, min_size=40, max_size=80)


def test_fuzzed_entries_are_each_answered_exactly_once(ingest: Ingest):
    sent: list[str] = []

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(burst=bursts)
    def one_burst(burst: list[RawEntry]) -> None:
        ids = ingest.send(burst)
        ingest.wait_answered(ids)
        sent.extend(ids)

    one_burst()
    while len(sent) < FUZZ_ENTRIES:  # hypothesis may stop early once it has seen enough
        one_burst()
    ingest.wait_nothing_pending()
    ingest.collect_answers()
    assert [i for i in sent if ingest.answers[i] != 1] == []
    assert ingest.alive()
    rejected = _rejections(ingest)
    assert {"bad_encoding", "invalid"} <= set(rejected.values()), Counter(rejected.values())


def test_extreme_entries_are_rejected_with_the_reason(ingest: Ingest):
    million_fields = [(b"f%d" % i, b"") for i in range(1_000_000)]
    entries: dict[str, RawEntry] = {
        "bad_encoding": [(b"task", b"demo"), (b"payload", b"\x00\xff not json")],
        "bad_encoding name": [(b"\xff\xfe", b"demo")],
        "duplicate_field": [(b"task", b"demo"), (b"task", b"demo"), (b"prompt", b"x")],
        "invalid": [(b"", b"")],
        "too_large": [(b"prompt", b"x" * (16 << 20))],
        "too_large fields": million_fields,
    }
    ids = dict(zip(entries, ingest.send(list(entries.values())), strict=True))
    ingest.wait_answered(list(ids.values()))
    rejected = _rejections(ingest)
    assert {name: rejected[i] for name, i in ids.items()} == {name: name.split()[0] for name in entries}
    event = _event_of(ingest, ids["bad_encoding"])
    assert event["field"] == "payload" and "UTF-8" in event["error"]
    ingest.wait_nothing_pending()
    assert ingest.alive()


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.generate])
@given(burst=bursts)
def test_killed_mid_burst_and_restarted_every_entry_is_answered_once(killable_ingest: Ingest, burst):
    ingest = killable_ingest
    entries = (burst * (3000 // len(burst) + 1))[:3000]  # a hostile mix, big enough to kill mid-way
    ids = ingest.send(entries)
    deadline = time.monotonic() + 30
    while sum(ingest.answers[i] for i in ids) < 200:
        assert time.monotonic() < deadline, "ingest answered nothing"
        ingest.collect_answers()
    assert ingest.proc is not None
    ingest.proc.stop(signal.SIGKILL)
    ingest.collect_answers()
    answered_before_restart = sum(1 for i in ids if ingest.answers[i])
    ingest.start()
    ingest.wait_answered(ids)
    ingest.wait_nothing_pending()
    ingest.collect_answers()
    assert 0 < answered_before_restart < len(ids)  # it was killed with work left
    assert [i for i in ids if ingest.answers[i] != 1] == []
    assert ingest.alive()


def _rejections(ingest: Ingest) -> dict[str, str]:
    """Reason per request id of every `rejected` event."""
    rows = ingest.redis.xrange(ingest.keys.events)
    events = [json.loads(fields[b"payload"]) for _, fields in rows if fields[b"type"] == b"rejected"]
    return {event["request_id"]: event["reason"] for event in events}


def _event_of(ingest: Ingest, request_id: str) -> dict:
    for _, fields in ingest.redis.xrange(ingest.keys.events):
        event = json.loads(fields[b"payload"])
        if event.get("request_id") == request_id:
            return event
    raise AssertionError(f"no event for {request_id}")
