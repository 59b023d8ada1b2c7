"""The egress guard: address policy, URL syntax, DNS checks, pinned connections, guarded fetch."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.egress import (
    EgressRefused,
    FetchError,
    ResolvedTarget,
    check_address,
    check_literal_host,
    check_url_syntax,
    fetch_bytes,
    parse_networks,
    pinned_client,
    resolve_checked,
)

LOOPBACK = parse_networks(["127.0.0.1/32"])


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.5.5.5", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.1.2.3", "private"),
        ("64:ff9b::a00:1", "private"),
        ("2002:a9fe:a9fe::1", "metadata"),
    ],
)
def test_non_public_addresses_are_refused_with_the_reason(address, reason):
    with pytest.raises(EgressRefused) as refused:
        check_address(ipaddress.ip_address(address))
    assert reason in refused.value.reason and address.split("::")[0] in str(refused.value)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    check_address(ipaddress.ip_address(address))


def test_allow_list_admits_internal_receivers():
    allow = parse_networks(["127.0.0.1/32", "10.20.0.0/16", "fd00::/8"])
    for address in ("127.0.0.1", "10.20.3.4", "fd00::5", "::ffff:127.0.0.1"):
        check_address(ipaddress.ip_address(address), allow)
    for address in ("127.0.0.2", "10.21.0.1", "169.254.169.254"):
        with pytest.raises(EgressRefused):
            check_address(ipaddress.ip_address(address), allow)


@given(st.ip_addresses(v=4, network="10.0.0.0/8") | st.ip_addresses(v=4, network="169.254.0.0/16"))
def test_every_address_of_refused_networks_is_refused(address):
    with pytest.raises(EgressRefused):
        check_address(address)
    check_address(address, parse_networks(["10.0.0.0/8", "169.254.0.0/16"]))


def test_parse_networks_names_the_bad_entry():
    assert parse_networks([" 127.0.0.1/32 ", "", "::1/128"]) == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert parse_networks("127.0.0.1/32, ::1/128") == parse_networks(["127.0.0.1/32", "::1/128"])
    with pytest.raises(ValueError, match=r"10\.0\.0\.1/8"):
        parse_networks(["10.0.0.1/8"])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.com/", "scheme"),
        ("http:///path", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("http://example.com:99999/", "malformed"),
        ("example.com/hook", "scheme"),
    ],
)
def test_url_syntax(url, reason):
    with pytest.raises(EgressRefused, match=reason):
        check_url_syntax(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/", "http://localhost:8080/", "http://[::1]/", "http://127.1/", "http://0x7f000001/"]
)
def test_literal_check_needs_no_dns(url):
    with pytest.raises(EgressRefused, match="loopback"):
        check_literal_host(url)
    check_literal_host("https://hooks.example.com/x")  # a name: left to resolve_checked


async def test_resolution_checks_every_address():
    with pytest.raises(EgressRefused, match="loopback"):
        await resolve_checked("http://localhost:9/")
    target = await resolve_checked("http://localhost:9/", parse_networks(["127.0.0.0/8", "::1/128"]))
    assert target.host == "localhost" and target.port == 9 and target.address.is_loopback
    with pytest.raises(EgressRefused, match="metadata"):
        await resolve_checked("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(OSError):
        await resolve_checked("http://no-such-host.invalid/")


async def test_pinned_client_connects_to_the_checked_address_keeping_the_host_header(receiver):
    # The name does not resolve at all: the connection can only have gone to the pinned address.
    target = ResolvedTarget(
        "http://hooks.invalid/", "http", "hooks.invalid", receiver.port, ipaddress.ip_address("127.0.0.1")
    )
    async with pinned_client(target, 2) as client:
        response = await client.post(f"http://hooks.invalid:{receiver.port}/ok/pinned", content=b"{}")
        assert response.status_code == 200
        with pytest.raises(EgressRefused, match="pinned"):
            await client.post("http://other.invalid/ok/x")
    [request] = receiver.received()
    assert request.headers["host"] == f"hooks.invalid:{receiver.port}"


async def test_fetch_bytes_limits(receiver):
    assert await fetch_bytes(receiver.url("/ok/img"), LOOPBACK, max_bytes=10, timeout=2) == b"ok"
    with pytest.raises(FetchError, match="limit"):
        await fetch_bytes(receiver.url("/ok/img"), LOOPBACK, max_bytes=1, timeout=2)
    with pytest.raises(FetchError, match="HTTP 500"):
        await fetch_bytes(receiver.url("/fail/img"), LOOPBACK, max_bytes=10, timeout=2)
    with pytest.raises(FetchError, match="longer than"):
        await fetch_bytes(receiver.url("/slow/1/img"), LOOPBACK, max_bytes=10, timeout=0.3)
    with pytest.raises(EgressRefused):
        await fetch_bytes(receiver.url("/ok/img"), (), max_bytes=10, timeout=2)
    with pytest.raises(FetchError, match=r"resolve|longer"):
        await fetch_bytes("https://no-such-host.invalid/img", (), max_bytes=10, timeout=2)


async def test_redirects_are_not_followed(redirector):
    target = await resolve_checked(redirector, LOOPBACK)
    async with pinned_client(target, 2) as client:
        response = await client.get(redirector)
    assert response.status_code == 302
    with pytest.raises(FetchError, match="302"):
        await fetch_bytes(redirector, LOOPBACK, max_bytes=100, timeout=2)


@pytest.fixture
def redirector():
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/r"
    server.shutdown()
    server.server_close()
