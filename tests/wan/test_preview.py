"""Previews while a job runs (wan.preview): every N steps but the last, a small JPEG of the clean
estimate's first frame; the video itself is unchanged by them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.wan.support import tiny_input
from wan.job import StepInfo
from wan.preview import MAX_BYTES, MAX_SIDE


@pytest.mark.parametrize("task", ["t2v-A14B", "i2v-A14B", "ti2v-5B"])
def test_previews_every_n_steps_are_small_jpegs_and_leave_the_frames_alone(tiny_models: dict, task: str) -> None:
    model = tiny_models[task]
    inp = tiny_input(task, sample_steps=7)
    plain = model.generate(inp)
    steps: list[StepInfo] = []
    with_previews = model.generate(inp, on_step=steps.append, preview_every=3)
    assert np.array_equal(with_previews, plain)
    previews = {info.step: info.preview for info in steps if info.preview is not None}
    assert sorted(previews) == [3, 6]  # not at the last step: the video follows at once
    width, height = model.last_input.width, model.last_input.height
    for data in previews.values():
        image = Image.open(io.BytesIO(data))
        assert image.format == "JPEG" and len(data) <= MAX_BYTES
        assert max(image.size) <= MAX_SIDE
        assert abs(image.size[0] / image.size[1] - width / height) < 0.1  # the video's shape
    assert previews[3] != previews[6]  # the estimate moves as denoising goes on


def test_no_previews_unless_asked(tiny_models: dict) -> None:
    steps: list[StepInfo] = []
    tiny_models["ti2v-5B"].generate(tiny_input("ti2v-5B", sample_steps=4), on_step=steps.append)
    assert len(steps) == 4 and all(info.preview is None for info in steps)
