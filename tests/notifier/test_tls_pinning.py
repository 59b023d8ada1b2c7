"""TLS through a pinned client (the egress guard's httpx client and the notifier's aiohttp
sessions): SNI and certificate checks use the URL's hostname while the connection goes to the
checked address."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import aiohttp
import httpx
import pytest

from services.egress import ResolvedTarget, pinned_client
from services.notifier.pinned import PinnedSession

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool):  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext, list[str]]]:
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test ca", ca_key, None, None, ca=True)
    leaf = _cert("hooks.test", leaf_key, ca.subject, ca_key, ca=False)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server_names: list[str] = []
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "key.pem")
    server_ctx.sni_callback = lambda _sock, name, _ctx: server_names.append(name)  # type: ignore[assignment,misc]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(204)
            self.send_header("x-host", self.headers["host"])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    yield int(server.server_address[1]), client_ctx, server_names
    server.shutdown()
    server.server_close()


def _target(host: str, port: int) -> ResolvedTarget:
    return ResolvedTarget(f"https://{host}:{port}/", "https", host, port, ipaddress.ip_address("127.0.0.1"))


async def test_tls_uses_the_hostname_for_sni_and_verification(tls_server):
    port, ctx, server_names = tls_server
    async with pinned_client(_target("hooks.test", port), 5, verify=ctx) as client:
        response = await client.post(f"https://hooks.test:{port}/hook", content=b"{}")
    assert response.status_code == 204 and response.headers["x-host"] == f"hooks.test:{port}"
    assert server_names == ["hooks.test"]


async def test_a_certificate_for_another_name_is_rejected(tls_server):
    port, ctx, _ = tls_server
    async with pinned_client(_target("evil.test", port), 5, verify=ctx) as client:
        with pytest.raises(httpx.ConnectError, match=r"(?i)certificate|hostname"):
            await client.post(f"https://evil.test:{port}/hook", content=b"{}")


async def test_notifier_sessions_use_the_hostname_for_sni_and_verification(tls_server):
    port, ctx, server_names = tls_server
    session = PinnedSession(_target("hooks.test", port), tls=ctx)
    try:
        reply = await session.post(f"https://hooks.test:{port}/hook", b"{}", {}, 5)
    finally:
        await session.aclose()
    assert reply.status == 204 and server_names == ["hooks.test"]


async def test_notifier_sessions_reject_a_certificate_for_another_name(tls_server):
    port, ctx, _ = tls_server
    session = PinnedSession(_target("evil.test", port), tls=ctx)
    try:
        with pytest.raises(aiohttp.ClientSSLError, match=r"(?i)certificate|hostname"):
            await session.post(f"https://evil.test:{port}/hook", b"{}", {}, 5)
    finally:
        await session.aclose()
