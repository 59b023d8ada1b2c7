"""Single-process generation with the tiny checkpoints: shapes, experts, progress, cancel, determinism."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.wan.support import TASKS, make_image, tiny_input, tiny_preset
from wan.loader import scheduler_with_shift
from wan.model import Cancelled, StepInfo
from wan.presets import parse_size
from wan.video import encode_mp4, probe_mp4


@contextlib.contextmanager
def calls(module: torch.nn.Module, log: list[str], name: str) -> Iterator[None]:
    """Append `name` to `log` each time `module` runs forward."""
    handle = module.register_forward_pre_hook(lambda *_: log.append(name))
    try:
        yield
    finally:
        handle.remove()


@pytest.mark.parametrize("task", TASKS)
def test_generates_video_that_decodes_back(tiny_models: dict, task: str) -> None:
    model, preset = tiny_models[task], tiny_preset(task)
    frames = model.generate(tiny_input(task))
    width, height = parse_size(preset.sizes[0])
    assert frames.shape == (preset.frame_num, height, width, 3)
    assert frames.dtype == np.float32 and frames.min() >= 0.0 and frames.max() <= 1.0
    assert frames.std() > 0.01  # a real decode, not a constant
    assert probe_mp4(encode_mp4(frames, preset.fps)) == (preset.frame_num, width, height)


@pytest.mark.parametrize("task", ["t2v-A14B", "i2v-A14B"])
def test_expert_switch_happens_at_boundary_step(tiny_models: dict, task: str) -> None:
    model, preset = tiny_models[task], tiny_preset(task)
    inp = tiny_input(task)
    scheduler = scheduler_with_shift(model.components.scheduler, inp.sample_shift)
    scheduler.set_timesteps(inp.sample_steps)
    boundary = preset.boundary_ratio * scheduler.config.num_train_timesteps
    expected = ["high_noise" if float(t) >= boundary else "low_noise" for t in scheduler.timesteps]
    assert "high_noise" in expected and "low_noise" in expected  # the tiny run crosses the boundary

    ran: list[str] = []
    steps: list[StepInfo] = []
    comps = model.components
    with calls(comps.transformer, ran, "high_noise"), calls(comps.transformer_2, ran, "low_noise"):
        model.generate(inp, on_step=steps.append)
    assert [s.expert for s in steps] == expected
    assert ran == [e for e in expected for _ in range(2)]  # cond + uncond pass per step, on the right expert


def test_progress_called_once_per_step_in_order(tiny_models: dict) -> None:
    steps: list[StepInfo] = []
    inp = tiny_input("ti2v-5B", sample_steps=3)
    tiny_models["ti2v-5B"].generate(inp, on_step=steps.append)
    assert [s.step for s in steps] == [1, 2, 3]
    assert {s.total for s in steps} == {3}
    assert {s.expert for s in steps} == {"single"}
    elapsed = [s.elapsed_s for s in steps]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0


@pytest.mark.parametrize("cancel_after", [0, 2])
def test_cancel_stops_without_decoding(tiny_models: dict, cancel_after: int) -> None:
    model = tiny_models["t2v-A14B"]
    steps: list[StepInfo] = []
    ran: list[str] = []
    comps = model.components
    with (
        calls(comps.transformer, ran, "t"),
        calls(comps.transformer_2, ran, "t"),
        calls(comps.vae.decoder, ran, "decode"),
        pytest.raises(Cancelled) as info,
    ):
        model.generate(tiny_input("t2v-A14B"), on_step=steps.append, should_cancel=lambda: len(steps) >= cancel_after)
    assert info.value.step == cancel_after
    assert [s.step for s in steps] == list(range(1, cancel_after + 1))
    assert ran == ["t"] * (2 * cancel_after)  # no further step, and no decode


def test_model_is_usable_after_cancel(tiny_models: dict) -> None:
    model = tiny_models["t2v-A14B"]
    reference = model.generate(tiny_input("t2v-A14B", seed=11))
    with pytest.raises(Cancelled):
        model.generate(tiny_input("t2v-A14B", seed=11), should_cancel=lambda: True)
    np.testing.assert_array_equal(model.generate(tiny_input("t2v-A14B", seed=11)), reference)


def test_same_seed_same_video_other_seed_other_video(tiny_models: dict) -> None:
    model = tiny_models["ti2v-5B"]
    first = model.generate(tiny_input("ti2v-5B", seed=5))
    np.testing.assert_array_equal(model.generate(tiny_input("ti2v-5B", seed=5)), first)
    assert np.abs(model.generate(tiny_input("ti2v-5B", seed=6)) - first).max() > 1e-3


@pytest.mark.parametrize("task", ["i2v-A14B", "ti2v-5B"])
def test_image_conditions_the_video(tiny_models: dict, task: str) -> None:
    model = tiny_models[task]
    one = model.generate(tiny_input(task, image=make_image(1)))
    other = model.generate(tiny_input(task, image=make_image(2)))
    assert one.shape == other.shape
    assert np.abs(one - other).max() > 1e-3


def test_guidance_and_shift_reach_the_model(tiny_models: dict) -> None:
    model = tiny_models["t2v-A14B"]
    base = model.generate(tiny_input("t2v-A14B"))
    assert np.abs(model.generate(tiny_input("t2v-A14B", guide_scale=[1.5, 6.0])) - base).max() > 1e-4
    assert np.abs(model.generate(tiny_input("t2v-A14B", sample_shift=3.0)) - base).max() > 1e-4


@pytest.mark.parametrize(
    ("task", "changes", "message"),
    [
        ("t2v-A14B", {"width": 40}, "multiples of 16"),
        ("ti2v-5B", {"width": 48}, "multiples of 32"),
        ("t2v-A14B", {"frame_num": 6}, r"4k\+1"),
        ("t2v-A14B", {"sample_steps": 0}, "sample_steps"),
        ("i2v-A14B", {"image": None}, "needs a conditioning image"),
        ("t2v-A14B", {"image": make_image()}, "does not take an image"),
    ],
)
def test_invalid_inputs_are_refused_clearly(tiny_models: dict, task: str, changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_models[task].generate(replace(tiny_input(task), **changes))
