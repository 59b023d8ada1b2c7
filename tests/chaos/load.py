"""The soak's requests: half XADDed with flat fields exactly as go-redis sends a map, half POSTed;
about 10 % malformed in varied ways; some sent twice with the same idempotency key or task id;
some cancelled while queued or while running."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

MALFORMED_STREAM = [
    {"task": "demo", "prompt": ""},
    {"task": "t9v-A14B", "prompt": "unknown task"},
    {"task": "demo", "prompt": "bad size", "size": "13*7"},
    {"task": "demo", "prompt": "bad frames", "frame_num": "6"},
    {"task": "demo", "prompt": "bad seed", "seed": "tomorrow"},
    {"task": "demo", "prompt": "private hook", "webhook_url": "http://10.0.0.1/x"},
    {"payload": "{this is not json"},
    {"task": "demo", "prompt": "typo", "frames": "5"},
]
MALFORMED_HTTP = [
    b"{not json",
    json.dumps({"task": "demo", "prompt": "x", "size": "1*1"}).encode(),
    json.dumps({"task": "demo", "prompt": "x", "image": "/etc/passwd"}).encode(),
    json.dumps({"task": "demo", "prompt": "x", "duration": 5}).encode(),
    json.dumps({"task": "demo"}).encode(),
]


@dataclass
class Request:
    index: int
    door: str  # "stream" | "http"
    fields: dict[str, str] | None = None  # stream
    body: bytes | None = None  # http
    headers: dict[str, str] = field(default_factory=dict)
    malformed: bool = False
    duplicate_of: int | None = None  # same idempotency key / task id as that request
    cancel: str | None = None  # "queued" | "running"
    # filled in as it runs
    request_id: str = ""
    task_id: str = ""
    status: int = 0
    cancel_outcome: str = ""


def build(n: int, webhook_url: str, seed: int = 11) -> list[Request]:
    rng = random.Random(seed)
    requests: list[Request] = []
    for index in range(n):
        door = "stream" if index % 2 == 0 else "http"
        roll = rng.random()
        if roll < 0.10:
            requests.append(_malformed(index, door, rng))
            continue
        body = {
            "task": "demo",
            "prompt": f"soak request {index}",
            "seed": str(index),
            "webhook_url": webhook_url,
            "metadata": {"soak": str(index)},
        }
        cancel = None if roll >= 0.16 else "queued" if roll < 0.13 else "running"
        if cancel == "running":  # long enough that the cancel, retried through outages, finds it running
            body["sample_steps"] = 60
        request = _valid(index, door, body)
        request.cancel = cancel
        requests.append(request)
        if 0.16 <= roll < 0.22:  # the same request again, as a retrying client would send it
            requests.append(_duplicate(len(requests), request, index))
    return requests


def _valid(index: int, door: str, body: dict) -> Request:
    if door == "stream":
        fields = {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in body.items()}
        return Request(index, door, fields=fields | {"task_id": f"soak-{index}"})
    body = body | {"seed": int(body["seed"])}
    return Request(index, door, body=json.dumps(body).encode(), headers={"Idempotency-Key": f"soak-key-{index}"})


def _duplicate(index: int, first: Request, first_index: int) -> Request:
    twin = Request(index, first.door, fields=first.fields, body=first.body, headers=first.headers)
    twin.duplicate_of = first_index
    return twin


def _malformed(index: int, door: str, rng: random.Random) -> Request:
    if door == "stream":
        return Request(index, door, fields=dict(rng.choice(MALFORMED_STREAM)), malformed=True)
    return Request(index, door, body=rng.choice(MALFORMED_HTTP), malformed=True)
