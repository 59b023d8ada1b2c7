"""Signing (checked by the standardwebhooks reference library), settings, schedule, payload."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest
import standardwebhooks

from services.contracts import Cancelled, Completed, Rejected, TaskState
from services.notifier.payload import DEFAULT_EVENTS, body_decoder, build_body, parse_events
from services.notifier.schedule import RetrySchedule, parse_retry_after
from services.notifier.settings import NotifierSettings
from services.notifier.signing import generate_secret, parse_secret, sign_headers
from services.settings import SettingsError, load


def test_signatures_verify_with_the_reference_library():
    secret, other = generate_secret(), generate_secret()
    body = b'{"type":"task.completed","data":{"x":"\xc3\xa9"}}'
    headers = sign_headers("msg_1", int(time.time()), body, [secret, other])
    assert standardwebhooks.Webhook(secret).verify(body, headers)["type"] == "task.completed"
    assert standardwebhooks.Webhook(other).verify(body, headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body + b" ", headers)


def test_secret_format():
    secret = generate_secret()
    assert secret.startswith("whsec_") and len(parse_secret(secret)) == 24
    for bad in ("plain", "whsec_", "whsec_c2hvcnQ="):
        with pytest.raises(ValueError):
            parse_secret(bad)


def test_settings_defaults_and_environment():
    settings = load(NotifierSettings, env={})
    assert settings.schedule == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert (settings.webhook_timeout_s, settings.webhook_concurrency, settings.metrics_port) == (15, 100, 9101)
    assert settings.allow_networks == () and settings.secrets == []
    assert settings.webhook_record_ttl_s == 7 * 24 * 3600
    env = {
        "WAN22_WEBHOOK_SCHEDULE": "0, 0.5,2",
        "WAN22_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32,10.0.0.0/8",
        "WAN22_WEBHOOK_PER_ENDPOINT": "3",
        "WAN22_WEBHOOK_RECORD_TTL_S": "86400",
    }
    settings = load(NotifierSettings, env=env)
    assert settings.schedule == (0, 0.5, 2) and len(settings.allow_networks) == 2
    assert (settings.webhook_per_endpoint, settings.webhook_record_ttl_s) == (3, 86400)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WAN22_WEBHOOK_SCHEDULE", "0,soon"),
        ("WAN22_WEBHOOK_SCHEDULE", ""),
        ("WAN22_WEBHOOK_SCHEDULE", "-1"),
        ("WAN22_WEBHOOK_ALLOW_NETWORKS", "10.0.0.1/8"),
        ("WAN22_WEBHOOK_TIMEOUT_S", "0"),
        ("WAN22_WEBHOOK_CONCURRENCY", "0"),
        ("WAN22_WEBHOOK_PER_ENDPOINT", "many"),
        ("WAN22_WEBHOOK_SECRET", "hunter2"),
        ("WAN22_WEBHOOK_RECORD_TTL_S", "60"),
        ("WAN22_METRICS_PORT", "http"),
    ],
)
def test_bad_settings_name_the_variable(variable, value):
    with pytest.raises(SettingsError, match=variable):
        load(NotifierSettings, env={variable: value})


def test_schedule_jitter_and_retry_after():
    schedule = RetrySchedule((0, 10, 100), jitter=0.1)
    assert schedule.first_delay() == 0
    delays = [schedule.next_delay(1) for _ in range(200)]
    assert all(d is not None and 9 <= d <= 11 for d in delays) and len(set(delays)) > 1
    assert schedule.next_delay(3) is None
    assert schedule.next_delay(1, retry_after=50) >= 50  # type: ignore[operator]
    assert schedule.next_delay(1, retry_after=10_000) <= 100 * 1.1  # type: ignore[operator]
    assert parse_retry_after("120", 0) == 120
    now = time.time()
    assert 55 <= parse_retry_after(formatdate(now + 60, usegmt=True), now) <= 61  # type: ignore[operator]
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_body_shape_for_each_kind():
    state = TaskState(task_id="t", status="completed", task="t2v-A14B", metadata={"k": "v"}, created_at=1.5)
    completed = Completed(task_id="t", video_url="u", ts=2.0, width=464, height=832, frame_num=81, fps=16)
    body = body_decoder.decode(build_body(completed, state))
    assert body.type == "task.completed" and body.timestamp == "1970-01-01T00:00:02.000Z"
    assert (body.data.width, body.data.height, body.data.frame_num, body.data.fps) == (464, 832, 81, 16)
    assert body.data.metadata == {"k": "v"} and body.data.created_at == "1970-01-01T00:00:01.500Z"
    rejected = body_decoder.decode(build_body(Rejected(task_id="r", error="bad", field="size", ts=1.0), None))
    assert (rejected.data.status, rejected.data.field, rejected.data.reason) == ("rejected", "size", "invalid")
    cancelled = body_decoder.decode(build_body(Cancelled(task_id="c", ts=1.0), None))
    assert cancelled.data.status == "cancelled" and cancelled.data.reason == "requested"


def test_event_filters():
    assert parse_events("completed, task.failed") == ["completed", "failed"]
    assert len(parse_events("all")) == 7
    assert set(DEFAULT_EVENTS) == {"started", "completed", "failed", "cancelled", "rejected"}
    with pytest.raises(ValueError, match="finished"):
        parse_events("completed,finished")


def test_gc_tuning_freezes_startup_objects_and_raises_the_young_threshold():
    import subprocess
    import sys

    code = "import gc; from services import gctuning; gctuning.tune(); "
    code += "print(gc.get_threshold()[0], gc.get_freeze_count())"  # in a child: pytest's collector stays as it is
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    young, frozen = out.split()
    assert int(young) == 5000 and int(frozen) > 1000
