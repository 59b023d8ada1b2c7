"""Warm-up shapes: parsed and checked torch-free at config load; a warm-up runs each expert once at
the shape; after it, the first job compiles nothing and is no slower per step than the second."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from services.models_config import load_models
from services.settings import SettingsError
from tests.wan.support import tiny_input, tiny_preset
from wan.model import WanModel
from wan.presets import PRESETS
from wan.sizing import fit_to_image
from wan.speedups import Speedups
from wan.warmup import check_shape, parse_shape, warm_up, warmup_input

TASK = "t2v-A14B"


def test_shapes_parse_and_bad_ones_are_refused_at_config_load_naming_warmup(tmp_path: Path) -> None:
    assert parse_shape("832*480x81") == (832, 480, 81)
    assert check_shape(PRESETS["ti2v-5B"], "1280*704x121") == (1280, 704, 121)
    assert check_shape(PRESETS["i2v-A14B"], "720*544x81") == (720, 544, 81)  # an image job's size
    bad = {
        "832x480": "WIDTH\\*HEIGHTxFRAMES",
        "832*480x80": "4k\\+1",
        "840*480x81": "multiples of 16",
        "832*480x245": "max_frames 241",
        "1280*736x81": "largest size 1280\\*720",
    }
    for shape, reason in bad.items():
        path = tmp_path / "models.toml"
        path.write_text(f'[tasks.t2v-A14B]\nckpt_dir = "/m"\nwarmup = ["832*480x81", "{shape}"]\n')
        with pytest.raises(SettingsError, match=rf"\[tasks.t2v-A14B\].*warmup: '{re.escape(shape)}'.*{reason}"):
            load_models(str(path))
    path.write_text('[tasks.t2v-A14B]\nckpt_dir = "/m"\nwarmup = ["832*480x81", "1280*720x81"]\n')
    served = load_models(str(path)).get("t2v-A14B")
    assert served is not None and served.warmup == ("832*480x81", "1280*720x81")


@pytest.mark.parametrize("task", sorted(PRESETS))
def test_a_warm_up_image_keeps_the_shape_of_every_preset_size(task: str) -> None:
    """i2v warms with a synthetic image, whose aspect ratio must give back exactly the shape."""
    preset = PRESETS[task]
    for size in preset.sizes:
        shape = parse_shape(f"{size}x{preset.frame_num}")
        inp = fit_to_image(warmup_input(preset, shape), preset.kind, preset.vae_stride, preset.patch_size)
        assert (inp.width, inp.height, inp.frame_num) == shape
        assert (inp.image is not None) == preset.needs_image


TWO = ["high_noise", "low_noise"]


@pytest.mark.parametrize(("task", "experts"), [("t2v-A14B", TWO), ("i2v-A14B", TWO), ("ti2v-5B", ["single"])])
def test_a_warm_up_runs_each_expert_once_and_is_not_a_job(tiny_models: dict, task: str, experts: list[str]) -> None:
    model = tiny_models[task]
    model.generate(tiny_input(task, sample_steps=1))
    last = model.last_input
    seconds, ran = warm_up(model, parse_shape(f"{tiny_preset(task).sizes[0]}x5"))
    assert ran == experts and seconds > 0
    assert model.last_input is last


def _step_seconds(model: WanModel, seed: int) -> list[float]:
    """Seconds of each step of one job (the first also holds the prompt's encoding)."""
    elapsed: list[float] = []
    model.generate(tiny_input(TASK, seed=seed), on_step=lambda info: elapsed.append(info.elapsed_s))
    return [after - before for before, after in zip([0.0, *elapsed], elapsed, strict=False)]


def _compiled(tiny_root: Path) -> WanModel:
    torch._dynamo.reset()  # compiled code is cached per block class: start from none
    return WanModel.load(tiny_root / TASK, tiny_preset(TASK), speedups=Speedups(compile_blocks=True))


def _no_slower(first: list[float], second: list[float]) -> bool:
    """The first job's slowest step against the second's. The margin (1.5x + 0.5 s) absorbs a
    shared 2-core host's jitter on steps of tens of milliseconds; the compile it guards against
    costs seconds (the cold job below shows how much), far above it."""
    return max(first) <= 1.5 * max(second) + 0.5


def test_after_warm_up_the_first_compiled_job_compiles_nothing_and_is_no_slower(tiny_root: Path) -> None:
    from torch._dynamo.utils import counters

    counters.clear()
    cold = _compiled(tiny_root)
    cold_first, cold_second = _step_seconds(cold, 7), _step_seconds(cold, 8)
    # Without a warm-up the first job compiles the block on its first step: this bound fails.
    assert counters["stats"]["unique_graphs"] == 1
    assert not _no_slower(cold_first, cold_second), (cold_first, cold_second)

    counters.clear()
    warm = _compiled(tiny_root)
    warm_up(warm, parse_shape("32*32x5"))
    assert counters["stats"]["unique_graphs"] == 1  # the warm-up compiled it
    with torch._dynamo.config.patch(error_on_recompile=True):  # any compile from now on raises
        first, second = _step_seconds(warm, 7), _step_seconds(warm, 8)
    assert counters["stats"]["unique_graphs"] == 1
    assert _no_slower(first, second), (first, second)
