"""The pieces of /v1/videos that need no server: seconds ↔ frames, byte ranges, form fields."""

from __future__ import annotations

import pytest

from services.ingest.api_error import ApiError
from services.ingest.invalid import Invalid
from services.ingest.videos.content import byte_range
from services.ingest.videos.create import VideoCreate, frames_for_seconds, parse_create, seconds_of, to_request
from services.ingest.videos.form import _place
from services.models_config import builtin


@pytest.mark.parametrize(
    ("seconds", "fps", "frames"),
    [(5, 16, 81), (5, 24, 121), (4, 16, 65), (0.17, 24, 5), (0.01, 16, 5), (2.9, 16, 49)],
)
def test_seconds_become_release_frame_counts(seconds: float, fps: int, frames: int) -> None:
    assert frames_for_seconds(seconds, fps) == frames
    assert (frames - 1) % 4 == 0


def test_seconds_of_frames_inverts_the_rule() -> None:
    assert seconds_of(81, 16) == "5"
    assert seconds_of(121, 24) == "5"
    assert seconds_of(frames_for_seconds(3, 16), 16) == "3"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99, True)),
        ("bytes=900-", (900, 999, True)),
        ("bytes=-100", (900, 999, True)),
        ("bytes=990-5000", (990, 999, True)),
        (None, (0, 999, False)),
        ("bytes=0-1,5-6", (0, 999, False)),  # several ranges: the whole file
        ("items=0-1", (0, 999, False)),
    ],
)
def test_byte_ranges(header: str | None, expected: tuple[int, int, bool]) -> None:
    span = byte_range(header, 1000)
    assert (span.start, span.end, span.partial) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5-2"])
def test_unsatisfiable_range_is_416_with_the_size(header: str) -> None:
    with pytest.raises(ApiError) as caught:
        byte_range(header, 1000)
    assert caught.value.status == 416
    assert caught.value.headers["Content-Range"] == "bytes */1000"


def test_bracket_fields_rebuild_what_the_sdk_flattened() -> None:
    # The pairs openai's multipart encoder writes for these values.
    pairs = [
        ("prompt", "x"),
        ("metadata[team]", "a"),
        ("metadata[run]", "7"),
        ("loras[][name]", "style"),
        ("loras[][scale]", "0.5"),
        ("loras[][name]", "detail"),
        ("guidance_scale[]", "1"),
        ("guidance_scale[]", "2"),
    ]
    values: dict = {}
    for key, value in pairs:
        _place(values, key, value)
    assert values == {
        "prompt": "x",
        "metadata": {"team": "a", "run": "7"},
        "loras": [{"name": "style", "scale": "0.5"}, {"name": "detail"}],
        "guidance_scale": ["1", "2"],
    }


def test_form_strings_convert_and_map_to_the_service_fields() -> None:
    create = parse_create(
        {"prompt": "a fox", "model": "t2v-A14B", "size": "832x480", "seconds": "4", "seed": "7",
         "num_inference_steps": "30", "guidance_scale": "3", "guidance_scale_2": "4.5", "flow_shift": "8"}
    )  # fmt: skip
    request = to_request(create, builtin(), "")
    assert (request.task, request.size, request.frame_num, request.seed) == ("t2v-A14B", "832*480", 65, 7)
    assert (request.sample_steps, request.sample_shift, request.guide_scale) == (30, 8.0, [3.0, 4.5])


def test_guidance_scale_alone_sets_both_experts_and_the_second_alone_only_high_noise() -> None:
    models = builtin()
    low = models.tasks["t2v-A14B"].preset.guide_scale[0]
    assert to_request(VideoCreate(prompt="x", model="t2v-A14B", guidance_scale=2), models, "").guide_scale == [2, 2]
    assert to_request(VideoCreate(prompt="x", model="t2v-A14B", guidance_scale_2=6), models, "").guide_scale == [
        low,
        6,
    ]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"prompt": "x", "model": "t2v-A14B", "size": "832*480"}, "size"),
        ({"prompt": "x", "model": "t2v-A14B", "seconds": "soon"}, "seconds"),
        ({"prompt": "x", "model": "t2v-A14B", "seconds": "60"}, "seconds"),
        ({"prompt": "x", "model": "t2v-A14B", "seconds": -1}, "seconds"),
        ({"prompt": "x", "model": "nope"}, "model"),
        ({"prompt": "x"}, "model"),
        ({"prompt": "x", "model": "t2v-A14B", "fps": "30"}, "fps"),
        ({"prompt": "x", "model": "t2v-A14B", "width": "832"}, "height"),
        ({"prompt": "x", "model": "t2v-A14B", "input_reference": {"url": "s3://b/k"}}, "input_reference"),
        ({"prompt": "x", "model": "t2v-A14B", "quality": "hd"}, "quality"),
        ({"prompt": "x", "model": "t2v-A14B", "seed": "seven"}, "seed"),
        ({"model": "t2v-A14B"}, "prompt"),
    ],
)
def test_bad_fields_are_named(values: dict, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        to_request(parse_create(values), builtin(), "")
    assert caught.value.field == field, caught.value.message
