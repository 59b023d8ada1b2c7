"""Wire contracts: one msgspec type per stream message, one encoder/decoder per type.

Every entry the services write has the fields `type`, `task_id` and `payload` (the JSON of the
message). New fields always get defaults so producers and consumers can be deployed in any order.
`docs/schema/` holds the JSON Schema of each type (`wan22 schema`); the Go side generates from it.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct
from redis.typing import EncodableT, FieldT

TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TaskId = Annotated[str, Meta(min_length=1, max_length=128, pattern=TASK_ID_PATTERN)]
Prompt = Annotated[str, Meta(max_length=8000)]
Url = Annotated[str, Meta(max_length=4096)]
Metadata = Annotated[dict[str, str], Meta(max_length=64)]
Seed = Annotated[int, Meta(ge=-1, le=2**63 - 1)]
Percent = Annotated[float, Meta(ge=0, le=100)]

Priority = Literal["high", "normal", "low"]  # services.keys.PRIORITIES, highest first
DeadlineS = Annotated[float, Meta(gt=0, le=30 * 24 * 3600)]
Status = Literal["queued", "running", "retrying", "completed", "failed", "cancelled", "rejected"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled", "rejected"})


def is_task_id(value: str) -> bool:
    return re.fullmatch(TASK_ID_PATTERN, value) is not None


def now() -> float:
    return time.time()


Expert = Literal["both", "high_noise", "low_noise"]
LoraScale = Annotated[float, Meta(ge=-8, le=8)]
MAX_LORAS = 4


class LoraChoice(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """An adapter of the task's LoRA registry, by name (a request never names a path). Scale and
    expert default to the registry entry's."""

    name: Annotated[str, Meta(min_length=1, max_length=64)]
    scale: LoraScale | None = None
    expert: Expert | None = None


class JobLora(Struct, kw_only=True):
    """A resolved choice: the generator finds the file under `name` in its own registry."""

    name: str
    scale: float = 1.0
    expert: Expert = "both"


class GenerateRequest(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A raw request as the Go side XADDs it (`payload` JSON or flat fields) or as POST /generate
    sends it (the original design's body). Ingest validates it into a `Job`."""

    task: Annotated[str, Meta(min_length=1, max_length=64)]
    prompt: Prompt = ""
    image: Url | None = None
    size: Annotated[str, Meta(max_length=16)] | None = None
    task_id: TaskId | None = None
    negative_prompt: Prompt | None = None
    seed: Seed | None = None
    frame_num: Annotated[int, Meta(ge=1, le=1001)] | None = None
    sample_steps: Annotated[int, Meta(ge=1, le=1000)] | None = None
    sample_shift: Annotated[float, Meta(gt=0, le=100)] | None = None
    guide_scale: Annotated[float, Meta(ge=0, le=50)] | list[Annotated[float, Meta(ge=0, le=50)]] | None = None
    webhook_url: Url | None = None
    metadata: Metadata | None = None
    ckpt_dir: Url | None = None
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    max_attempts: Annotated[int, Meta(ge=1, le=20)] | None = None
    priority: Priority | None = None
    deadline_s: DeadlineS | None = None
    loras: Annotated[list[LoraChoice], Meta(max_length=MAX_LORAS)] | None = None


class Job(Struct, kw_only=True):
    """A validated, normalized job on `wan22:jobs:<task>`: everything a worker needs, no defaults
    left to guess."""

    task_id: TaskId
    task: str
    prompt: Prompt
    negative_prompt: Prompt = ""
    image: Url | None = None
    width: Annotated[int, Meta(ge=16, le=4096)]
    height: Annotated[int, Meta(ge=16, le=4096)]
    frame_num: Annotated[int, Meta(ge=1, le=1001)]
    sample_steps: Annotated[int, Meta(ge=1, le=1000)]
    sample_shift: Annotated[float, Meta(gt=0)]
    # (low-noise expert, high-noise expert) as in Wan2.2's configs; equal for one-expert models.
    guide_scale: tuple[Annotated[float, Meta(ge=0)], Annotated[float, Meta(ge=0)]]
    seed: Annotated[int, Meta(ge=0)]
    fps: Annotated[int, Meta(ge=1, le=120)]
    webhook_url: Url | None = None
    metadata: Metadata = {}
    max_attempts: Annotated[int, Meta(ge=1, le=20)] = 3
    request_id: str = ""
    created_at: float = 0.0
    priority: Priority = "normal"
    # Epoch seconds; 0 = none. Still queued past it: `failed` with error_type `expired`, never run.
    deadline_at: float = 0.0
    loras: list[JobLora] = []


class Progress(Struct, kw_only=True):
    """One denoising step, on `wan22-progress-stream`."""

    task_id: str
    step: Annotated[int, Meta(ge=0)]
    total: Annotated[int, Meta(ge=1)]
    percent: Percent
    expert: str = ""
    elapsed_s: float = 0.0
    attempt: int = 1
    ts: float = 0.0
    # > 0: a preview of this step is at `wan22:preview:<task>` (and `/v1/videos/{id}/content?
    # variant=thumbnail`); its bytes stay out of the capped stream.
    preview_step: int = 0


# Lifecycle events on `wan22:events`: a tagged union on the `type` field.


class _Event(Struct, kw_only=True, tag_field="type"):
    task_id: str
    ts: float = 0.0


class Accepted(_Event, tag="accepted", kw_only=True):
    request_id: str = ""
    task: str = ""
    idempotent_replay: bool = False


class Rejected(_Event, tag="rejected", kw_only=True):
    request_id: str = ""
    error: str
    field: str | None = None
    reason: str = "invalid"


class Started(_Event, tag="started", kw_only=True):
    attempt: int = 1
    worker: str = ""


class Retrying(_Event, tag="retrying", kw_only=True):
    attempt: int
    max_attempts: int
    error: str
    delay_s: float = 0.0


class Completed(_Event, tag="completed", kw_only=True):
    """The video as it was made: an image job's size follows its image, so `width` and `height`
    may differ from the job's (0 = not reported, by a generator older than these fields)."""

    video_url: str
    poster_url: str = ""
    duration_s: float = 0.0
    attempt: int = 1
    width: int = 0
    height: int = 0
    frame_num: int = 0
    fps: int = 0


class Failed(_Event, tag="failed", kw_only=True):
    error: str
    attempts: int = 1
    error_type: str = ""


class Cancelled(_Event, tag="cancelled", kw_only=True):
    reason: str = "requested"


Event = Accepted | Rejected | Started | Retrying | Completed | Failed | Cancelled
TERMINAL_EVENTS = (Rejected, Completed, Failed, Cancelled)


class ErrorRecord(Struct, kw_only=True):
    """One failed delivery. `kind`: `error` (the handler raised), `lost` (its consumer died and
    the lease expired), `handed_back` (its consumer shut down; does not use up an attempt)."""

    at: float
    error: str
    attempt: int = 0
    kind: Literal["error", "lost", "handed_back"] = "error"


class RawField(Struct, kw_only=True):
    """One field of a stream entry exactly as it was written, base64."""

    name_b64: str
    value_b64: str


class DeadLetter(Struct, kw_only=True):
    """An entry that could not be processed, with everything needed to replay it. For an entry
    whose fields were not UTF-8 text (or repeated a name), `fields` shows them with undecodable
    bytes replaced and `raw_fields` keeps every field as written, which a replay writes back.
    Fields past the first MiB are left out of both and counted in `dropped_fields`."""

    stream: str
    group: str
    entry_id: str
    fields: dict[str, str]
    attempts: int
    errors: list[ErrorRecord] = []
    reason: Literal["undecodable", "exhausted", "permanent"] = "exhausted"
    dead_at: float = 0.0
    task_id: str = ""
    raw_fields: list[RawField] | None = None
    dropped_fields: int = 0


class QueueInfo(Struct, kw_only=True):
    """Where a queued task stands, computed when asked (not stored): `position` 1 = next to be
    claimed, counting every waiting job of a higher priority and the earlier ones of its own;
    `start_in_s` / `eta_s` (until started / done) from the mean of the task's recent run times
    over the live generators, None until a job of the task has completed."""

    position: int
    ahead: int
    generators: int = 0
    run_s: float | None = None
    start_in_s: float | None = None
    eta_s: float | None = None


class TaskState(Struct, kw_only=True, omit_defaults=True):
    """The hash `wan22:task:<id>`: the task's current state, every value a string in Redis."""

    task_id: str
    status: Status
    task: str = ""
    progress: Percent = 0.0
    step: int = 0
    total: int = 0
    expert: str = ""
    video_url: str = ""
    poster_url: str = ""
    # The finished video's actual size, frame count and frame rate (set on completion).
    width: int = 0
    height: int = 0
    frame_num: int = 0
    fps: int = 0
    error: str = ""
    field: str = ""
    attempts: int = 0
    request_id: str = ""
    worker: str = ""
    webhook_url: str = ""
    metadata: Metadata = {}
    created_at: float = 0.0
    updated_at: float = 0.0
    priority: str = ""
    deadline_at: float = 0.0
    queue_entry: str = ""  # the job's entry id on its stream
    # As asked (the finished video's own are `width`, `height`, `frame_num` above).
    prompt: str = ""
    requested_size: str = ""  # WIDTH*HEIGHT
    requested_frames: int = 0
    deleted_at: float = 0.0  # `DELETE /v1/videos/{id}`: assets removed, the video no longer listed
    queue: QueueInfo | None = None  # only while queued, on request (never in the hash)


# One encoder and one decoder per type, built once.
_encoder = msgspec.json.Encoder()
request_decoder = msgspec.json.Decoder(GenerateRequest)
job_decoder = msgspec.json.Decoder(Job)
progress_decoder = msgspec.json.Decoder(Progress)
event_decoder = msgspec.json.Decoder(Event)
dead_letter_decoder = msgspec.json.Decoder(DeadLetter)


def encode(message: Struct) -> bytes:
    return _encoder.encode(message)


def entry(kind: str, task_id: str, message: Struct) -> dict[FieldT, EncodableT]:
    """The common entry layout: `type`, `task_id`, `payload` (typed as XADD takes its fields)."""
    return {"type": kind, "task_id": task_id, "payload": _encoder.encode(message)}


def event_entry(event: Event) -> dict[FieldT, EncodableT]:
    if not event.ts:
        event.ts = now()
    return entry(type(event).__struct_config__.tag, event.task_id, event)  # type: ignore[arg-type]


def event_type(event: Event) -> str:
    return str(type(event).__struct_config__.tag)


def state_from_hash(raw: dict[str, str]) -> TaskState:
    """The task hash (all strings; `metadata` as JSON) → TaskState."""
    values: dict[str, Any] = dict(raw)
    if "metadata" in values:
        values["metadata"] = msgspec.json.decode(values["metadata"])
    return msgspec.convert(values, TaskState, strict=False)


def state_to_hash(state: TaskState | dict[str, Any]) -> dict[str, str]:
    values = msgspec.structs.asdict(state) if isinstance(state, Struct) else state
    return {k: _to_str(v) for k, v in values.items() if v is not None}


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict | list):
        return _encoder.encode(value).decode()
    return str(value)


SCHEMA_TYPES: dict[str, Any] = {
    "request": GenerateRequest,
    "job": Job,
    "progress": Progress,
    "event": Event,
    "dead_letter": DeadLetter,
    "task_state": TaskState,
}
