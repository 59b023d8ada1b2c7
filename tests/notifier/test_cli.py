"""`wan22 webhooks …`: output, --json and exit codes scripts rely on."""

from __future__ import annotations

import json

import anyio
import pytest
import redis as sync_redis

from services.cli.main import main
from services.contracts import now
from services.keys import Keys
from services.notifier import dlq, store
from services.notifier.store import Attempt, Claimed, Delivery
from services.redisconn import connect


@pytest.fixture
def cli(redis_url, capsys):
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["webhooks", "--redis-url", redis_url, *args])
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    client.close()


def test_add_list_remove(cli):
    code, out, _ = cli("add", "https://hooks.example.com/wan")
    assert code == 0
    sub_id, secret_line = out.splitlines()
    assert sub_id.startswith("wh_") and "whsec_" in secret_line
    code, out, _ = cli(
        "add", "https://b.example.com/", "--events", "completed,failed", "--secret", "whsec_" + "A" * 32, "--json"
    )
    added = json.loads(out)
    assert code == 0 and added["events"] == ["completed", "failed"] and added["secret"] is None
    code, out, _ = cli("list", "--json")
    listed = json.loads(out)
    assert [s["id"] for s in listed] == [sub_id, added["id"]]
    assert "whsec_" not in out and listed[0]["secrets"] == 1
    assert cli("remove", sub_id)[0] == 0
    for command in ("remove", "enable", "rotate"):
        code, _, err = cli(command, sub_id)
        assert code == 4 and err.count("\n") == 1 and sub_id in err


@pytest.mark.parametrize(
    "args",
    [
        ("add", "http://10.0.0.1/hook"),
        ("add", "ftp://example.com/"),
        ("add", "https://example.com/", "--events", "finished"),
        ("add", "https://example.com/", "--secret", "hunter2"),
        ("dlq", "replay"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(cli, args):
    code, out, err = cli(*args)
    assert code == 2 and out == "" and err.count("\n") == 1


def test_unreachable_redis_exits_5_with_one_line(capsys):
    code = main(["webhooks", "--redis-url", "redis://127.0.0.1:1/0", "list"])  # nothing listens on port 1
    out, err = capsys.readouterr()
    assert code == 5 and out == "" and err.count("\n") == 1 and "cannot reach Redis" in err


def test_deployment_secret_is_generated_once(cli):
    first = cli("secret")[1].strip()
    assert first.startswith("whsec_") and cli("secret")[1].strip() == first


def test_dlq_list_and_replay(cli, redis_url):
    keys = Keys()

    async def seed() -> None:
        redis = connect(redis_url)
        delivery = Delivery(
            id="msg_x",
            target="task",
            url="https://e.example/",
            event="failed",
            task_id="t1",
            body="{}",
            created_at=now(),
        )
        await store.create(redis, keys, [delivery], now())
        [claimed] = await store.claim(redis, keys, now(), now() + 60, 1)
        claimed.attempts.append(Attempt(at=now(), status=503, error="HTTP 503"))
        await dlq.dead_letter(redis, keys, Claimed(claimed.delivery, claimed.attempts, 1), "exhausted")
        await redis.aclose()

    anyio.run(seed)
    code, out, _ = cli("dlq", "list", "--json")
    [letter] = json.loads(out)
    assert code == 0 and letter["reason"] == "exhausted" and letter["attempts"][0]["status"] == 503
    assert letter["delivery"]["task_id"] == "t1"
    code, out, _ = cli("dlq", "list")
    assert "t1" in out and "HTTP 503" in out
    code, out, _ = cli("dlq", "replay", letter["dlq_id"])
    assert code == 0 and "msg_x" in out
    assert cli("dlq", "replay", letter["dlq_id"])[0] == 4  # gone from the DLQ
    assert json.loads(cli("dlq", "list", "--json")[1]) == []
    assert cli("dlq", "replay", "--all")[1].strip() == "replayed 0"
