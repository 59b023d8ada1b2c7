"""The soak's webhook receiver: verifies every signature with the `standardwebhooks` reference
library, answers 500 or hangs past the notifier's timeout on a share of calls, and dedupes on
`webhook-id` as a real receiver would. Each delivery fails on purpose at most `max_failures`
times, fewer than the notifier's attempts, so a run of bad luck cannot use a delivery up: the
soak then tests retrying, not the odds (a loaded machine's own slow answers come on top)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks


class Receiver:
    def __init__(
        self, secret: str, failure_rate: float = 0.2, hang_s: float = 2.0, seed: int = 7, max_failures: int = 2
    ) -> None:
        self.webhook = standardwebhooks.Webhook(secret)
        self.failure_rate, self.hang_s, self.max_failures = failure_rate, hang_s, max_failures
        self.failures_of = Counter[str]()  # webhook-id -> failures answered on purpose
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.calls = 0
        self.failed_on_purpose = 0
        self.bad_signatures = 0
        self.delivered: dict[str, dict] = {}  # webhook-id -> body, first 2xx answered
        self.duplicates = Counter[str]()  # webhook-id -> 2xx answers after the first
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            self.calls += 1
            roll = self.random.random()
            if self.failures_of[headers.get("webhook-id", "")] >= self.max_failures:
                roll = 1.0  # this delivery has had its share of bad luck
        if roll < self.failure_rate / 2:
            self._count_failure(headers)
            return 500
        if roll < self.failure_rate:
            self._count_failure(headers)
            time.sleep(self.hang_s)  # longer than the notifier waits
            return 200
        try:
            payload = self.webhook.verify(body, headers)
        except standardwebhooks.webhooks.WebhookVerificationError:
            with self.lock:
                self.bad_signatures += 1
            return 400
        with self.lock:
            webhook_id = headers["webhook-id"]
            if webhook_id in self.delivered:
                self.duplicates[webhook_id] += 1
            else:
                self.delivered[webhook_id] = payload if isinstance(payload, dict) else json.loads(body)
        return 204

    def _count_failure(self, headers: dict[str, str]) -> None:
        with self.lock:
            self.failed_on_purpose += 1
            self.failures_of[headers.get("webhook-id", "")] += 1

    def events_by_task(self) -> dict[str, list[str]]:
        with self.lock:
            found: dict[str, list[str]] = {}
            for body in self.delivered.values():
                data = body["data"]
                found.setdefault(data["task_id"], []).append(data["event"])
            return found


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            status = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
            try:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:
                pass  # the notifier gave up waiting

    return Handler
