"""A real HTTP webhook receiver in a thread (http.server, keep-alive), recording every request.

The path chooses the behaviour:
  /ok/...            200
  /flaky/N/...       500 for the first N requests on this path, then 200
  /fail/...          500 until `fixed` is set, then 200
  /gone/...          410
  /slow/S/...        sleeps S seconds, then 200
  /hang-once/S/...   the first request on this path sleeps S seconds, later ones answer 200 at once
  /retry-after/S/... 503 with `Retry-After: S` for the first request, then 200
  /redirect/...      302 to the cloud metadata address
  /big/N/...         500 with a body of N bytes
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> dict:
        """The body, after the reference library checked the signature (raises if it fails)."""
        return standardwebhooks.Webhook(secret).verify(self.body, self.headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, receiver: Receiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        with self.receiver.lock:
            self.receiver.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        pass  # a client that went away (a killed notifier) is expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        receiver = self.server.receiver
        with receiver.lock:
            receiver.requests.append(
                Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
            )
            count = receiver.counts[self.path] = receiver.counts.get(self.path, 0) + 1
        status, headers = receiver.behave(self.path, count)
        reply = receiver.body(self.path)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST


class Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.counts: dict[str, int] = {}
        self.connections = 0
        self.fixed = False
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self, prefix: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def behave(self, path: str, count: int) -> tuple[int, dict[str, str]]:
        parts = path.strip("/").split("/")
        kind, arg = parts[0], (parts[1] if len(parts) > 1 else "0")
        if kind == "flaky":
            return (500 if count <= int(arg) else 200), {}
        if kind == "fail":
            return (200 if self.fixed else 500), {}
        if kind == "gone":
            return 410, {}
        if kind == "slow":
            time.sleep(float(arg))
        if kind == "hang-once" and count == 1:
            time.sleep(float(arg))
        if kind == "retry-after" and count == 1:
            return 503, {"retry-after": arg}
        if kind == "redirect":
            return 302, {"location": "http://169.254.169.254/latest/meta-data/"}
        if kind == "big":
            return 500, {}
        return 200, {}

    def body(self, path: str) -> bytes:
        parts = path.strip("/").split("/")
        if parts[0] == "big":
            return b"x" * int(parts[1])
        return b"ok"
