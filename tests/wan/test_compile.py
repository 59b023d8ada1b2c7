"""Regional torch.compile of the repeated blocks: same frames, and later jobs never recompile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.wan.support import tiny_input, tiny_preset
from wan.model import WanModel
from wan.speedups import Speedups

TASK = "t2v-A14B"


@pytest.mark.slow  # dynamo traces the block once (aot_eager on a CPU, wan.compile): several seconds
def test_compiled_blocks_same_frames_and_no_recompile_on_the_next_jobs(tiny_root: Path, tiny_models: dict) -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = WanModel.load(tiny_root / TASK, tiny_preset(TASK), speedups=Speedups(compile_blocks=True))
    frames = model.generate(tiny_input(TASK))
    np.testing.assert_allclose(frames, tiny_models[TASK].generate(tiny_input(TASK)), atol=1e-4)
    assert counters["stats"]["unique_graphs"] == 1  # one graph for every block of both experts

    with torch._dynamo.config.patch(error_on_recompile=True):  # a recompile raises
        other = model.generate(tiny_input(TASK, seed=9, guide_scale=1.0))
        again = model.generate(tiny_input(TASK))
    assert counters["stats"]["unique_graphs"] == 1
    np.testing.assert_array_equal(again, frames)
    assert np.abs(other - frames).max() > 1e-3
