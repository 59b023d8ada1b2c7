"""A real S3-speaking HTTP endpoint (moto's standalone server) on a free port."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from moto.server import ThreadedMotoServer

from tests.redis_server import free_port

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """`put_delay_s`: each PUT takes that long (a slow link); `on_put(path)` is called as one begins."""

    def __init__(self, put_delay_s: float = 0.0, on_put: Callable[[str], None] | None = None) -> None:
        self.port = free_port()
        if put_delay_s or on_put:
            self.server: ThreadedMotoServer = _SlowPuts(self.port, put_delay_s, on_put)
        else:
            self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        os.environ.update(S3_ENV)
        self.server.start()
        return self

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.url, **_credentials())

    def stop(self) -> None:
        self.server.stop()


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


class _SlowPuts(ThreadedMotoServer):
    def __init__(self, port: int, delay_s: float, on_put: Callable[[str], None] | None) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.delay_s, self.on_put = delay_s, on_put

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)

        def slow(environ: dict[str, Any], start_response: Any) -> Any:
            if environ["REQUEST_METHOD"] == "PUT" and environ.get("QUERY_STRING", "") == "":
                if self.on_put:
                    self.on_put(environ["PATH_INFO"])
                time.sleep(self.delay_s)
            return app(environ, start_response)

        self._server = make_server(self._ip_address, self._port, slow, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()
