"""The notifier's pinned aiohttp sessions keep the egress guarantees: the checked address, the
original Host header, no other origin, no redirects, bounded reads and time."""

from __future__ import annotations

import ipaddress

import pytest

from services.contracts import Completed
from services.egress import EgressRefused, ResolvedTarget, parse_networks, resolve_checked
from services.notifier.clients import ClientPool
from services.notifier.delivery import attempt
from services.notifier.pinned import READ_LIMIT, PinnedResolver, PinnedSession
from services.notifier.signing import generate_secret
from services.notifier.store import Delivery
from tests.notifier.conftest import make_settings, publish, put_task, running, wait_until
from tests.redis_server import free_port

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def _target(host: str, port: int) -> ResolvedTarget:
    return ResolvedTarget(f"http://{host}:{port}/", "http", host, port, LOOPBACK)


async def test_connects_to_the_checked_address_keeping_the_host_header(receiver):
    # The name does not resolve at all: the connection can only have gone to the pinned address.
    session = PinnedSession(_target("hooks.invalid", receiver.port), user_agent="ua/1")
    try:
        for _ in range(3):
            reply = await session.post(f"http://hooks.invalid:{receiver.port}/ok/pinned", b"{}", {}, 2)
            assert (reply.status, reply.text, reply.retry_after) == (200, "ok", None)
    finally:
        await session.aclose()
    requests = receiver.received()
    assert [r.headers["host"] for r in requests] == [f"hooks.invalid:{receiver.port}"] * 3
    assert requests[0].headers["user-agent"] == "ua/1" and "cookie" not in requests[0].headers
    assert receiver.connections == 1  # kept alive and reused


async def test_another_origin_is_refused_without_connecting(receiver):
    session = PinnedSession(_target("hooks.invalid", receiver.port))
    try:
        for url in (f"http://other.invalid:{receiver.port}/ok/x", "http://hooks.invalid:1/ok/x"):
            with pytest.raises(EgressRefused, match="pinned"):
                await session.post(url, b"{}", {}, 2)
    finally:
        await session.aclose()
    assert receiver.connections == 0


async def test_the_resolver_answers_only_the_target_name():
    resolver = PinnedResolver(_target("hooks.invalid", 8080))
    [answer] = await resolver.resolve("Hooks.Invalid.", 8080)
    assert (answer["host"], answer["port"], answer["hostname"]) == ("127.0.0.1", 8080, "Hooks.Invalid.")
    for host, port in (("evil.invalid", 8080), ("hooks.invalid", 9090)):
        with pytest.raises(EgressRefused):
            await resolver.resolve(host, port)


async def test_redirects_are_returned_not_followed(receiver):
    target = await resolve_checked(receiver.url("/"), make_settings("redis://x").allow_networks)
    session = PinnedSession(target)
    try:
        reply = await session.post(receiver.url("/redirect/x"), b"{}", {}, 2)
    finally:
        await session.aclose()
    assert reply.status == 302 and len(receiver.received()) == 1


async def test_reads_are_bounded_in_size_and_time(receiver):
    target = await resolve_checked(receiver.url("/"), make_settings("redis://x").allow_networks)
    session = PinnedSession(target)
    try:
        reply = await session.post(receiver.url(f"/big/{4 * READ_LIMIT}/x"), b"{}", {}, 2)
        assert reply.status == 500 and 0 < len(reply.text) <= 800
        with pytest.raises(TimeoutError):
            await session.post(receiver.url("/slow/1/x"), b"{}", {}, 0.2)
        assert (await session.post(receiver.url("/ok/after"), b"{}", {}, 2)).status == 200
    finally:
        await session.aclose()


async def test_a_redirecting_receiver_fails_the_attempt(redis, redis_url, keys, receiver):
    await put_task(redis, keys, "r1", receiver.url("/redirect/x"))
    async with running(redis, make_settings(redis_url, webhook_schedule="0")):
        await publish(redis, keys, Completed(task_id="r1", video_url="v"))
        await wait_until(lambda: redis.xlen(keys.webhook_dlq))
    [(_, fields)] = await redis.xrange(keys.webhook_dlq)
    assert "HTTP 302 (redirects are not followed)" in fields["payload"]
    assert [r.path for r in receiver.received()] == ["/redirect/x"]


async def test_attempt_errors_are_recorded(receiver):
    pool = ClientPool(parse_networks(["127.0.0.0/8"]), 2, 4)
    secrets = [generate_secret()]

    def delivery(url: str) -> Delivery:
        return Delivery(id="msg_1", target="task", url=url, event="completed", task_id="t", body="{}", created_at=0)

    try:
        closed = await attempt(pool, delivery(f"http://127.0.0.1:{free_port()}/x"), secrets, 2)
        assert closed.attempt.status == 0 and closed.attempt.error.startswith("ClientConnectorError")
        assert not closed.refused and closed.attempt.seconds > 0
        # A legacy IPv4 form: recent aiohttp refuses it, older versions connect to what it means,
        # which is the address the guard checked; either way nothing else is reached.
        odd = await attempt(pool, delivery(f"http://127.1:{receiver.port}/ok/odd"), secrets, 2)
        assert (odd.refused and "canonical" in odd.attempt.error) or odd.ok
        big = await attempt(pool, delivery(receiver.url("/big/100000/x")), secrets, 2)
        assert big.attempt.status == 500 and big.attempt.error == "HTTP 500: " + "x" * 200
        slow = await attempt(pool, delivery(receiver.url("/slow/1/x")), secrets, 0.3)
        assert slow.attempt.error == "timed out after 0.3 s" and 0.25 < slow.attempt.seconds < 1
    finally:
        await pool.aclose()
    assert [r.path for r in receiver.received() if r.path != "/ok/odd"] == ["/big/100000/x", "/slow/1/x"]
