"""Behaviour of the Wan2.2 release (github Wan-Video/Wan2.2) that the model follows: the default
negative prompt, the sampling timesteps and the guidance rule, on tiny checkpoints."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import msgspec
import numpy as np
import pytest

from tests.wan.support import TASKS, tiny_input, tiny_preset
from tests.wan.test_generate import calls
from wan.job import GenerationInput
from wan.loader import released_scheduler, scheduler_with_shift
from wan.presets import PRESETS, RELEASE_NEGATIVE_PROMPT

# sha256 of `sample_neg_prompt` in the release's wan/configs/shared_config.py (UTF-8).
RELEASE_NEGATIVE_PROMPT_SHA256 = "ce96e0324e4b54ce4b6e867f669ca520952e1a34cc116543516b1897f0d3c47e"


def test_default_negative_prompt_is_the_release_text() -> None:
    digest = hashlib.sha256(RELEASE_NEGATIVE_PROMPT.encode()).hexdigest()
    assert digest == RELEASE_NEGATIVE_PROMPT_SHA256
    assert all(preset.negative_prompt == RELEASE_NEGATIVE_PROMPT for preset in PRESETS.values())
    assert GenerationInput.from_preset(PRESETS["t2v-A14B"], "a cat").negative_prompt == RELEASE_NEGATIVE_PROMPT
    mine = GenerationInput.from_preset(PRESETS["t2v-A14B"], "a cat", negative_prompt="blurred")
    assert mine.negative_prompt == "blurred"


@pytest.mark.parametrize("task", TASKS)
def test_empty_negative_prompt_gives_the_frames_of_the_release_default(tiny_models: dict, task: str) -> None:
    model = tiny_models[task]
    inp = tiny_input(task)
    empty = model.generate(replace(inp, negative_prompt=""))
    release = model.generate(replace(inp, negative_prompt=RELEASE_NEGATIVE_PROMPT))
    other = model.generate(replace(inp, negative_prompt="low quality"))
    assert np.array_equal(empty, release)
    assert not np.allclose(empty, other, atol=1e-4)  # the negative prompt does reach the model


def test_a_task_may_configure_its_own_default(tiny_models: dict) -> None:
    model = tiny_models["t2v-A14B"]
    inp = tiny_input("t2v-A14B")
    release = model.generate(replace(inp, negative_prompt=""))
    model.preset = msgspec.structs.replace(model.preset, negative_prompt="low quality")
    try:
        configured = model.generate(replace(inp, negative_prompt=""))
        asked = model.generate(replace(inp, negative_prompt="low quality"))
    finally:
        model.preset = tiny_preset("t2v-A14B")
    assert np.array_equal(configured, asked) and not np.allclose(configured, release, atol=1e-4)


# Timesteps and sigmas of the release's FlowUniPCMultistepScheduler (set_timesteps(steps, shift=s)),
# read off the release's own scheduler.
RELEASE_SCHEDULES = {
    (10, 12.0): (
        [999, 990, 979, 965, 947, 922, 888, 837, 749, 571],
        [0.999917, 0.990735, 0.979492, 0.965406, 0.947244, 0.922935, 0.888724, 0.837014, 0.749765, 0.571156, 0.0],
    ),
    (8, 5.0): (
        [999, 972, 937, 892, 833, 749, 624, 416],
        [0.9998, 0.972006, 0.937265, 0.892602, 0.833055, 0.7497, 0.624687, 0.416389, 0.0],
    ),
    (3, 1.0): ([999, 666, 333], [0.999, 0.666, 0.333, 0.0]),
}


@pytest.mark.parametrize(("steps", "shift"), sorted(RELEASE_SCHEDULES))
def test_timesteps_are_the_release_ones(steps: int, shift: float) -> None:
    timesteps, sigmas = RELEASE_SCHEDULES[(steps, shift)]
    scheduler = scheduler_with_shift(released_scheduler(), shift)
    scheduler.set_timesteps(steps)
    assert scheduler.timesteps.tolist() == timesteps
    assert np.allclose(scheduler.sigmas.numpy(), sigmas, atol=1e-6)


@pytest.mark.parametrize(("steps", "shift"), [(40, 12.0), (40, 5.0), (50, 5.0), (17, 3.0)])
def test_timesteps_follow_the_release_formula(steps: int, shift: float) -> None:
    # The release: sigmas evenly spaced from float32(0.999) to 0 (the last dropped), shifted by
    # s*x / (1 + (s-1)*x), timesteps = sigma * 1000 truncated to integers.
    top = float(np.float32(0.999))
    raw = np.linspace(top, 0.0, steps + 1)[:-1]
    shifted = shift * raw / (1 + (shift - 1) * raw)
    scheduler = scheduler_with_shift(released_scheduler(), shift)
    scheduler.set_timesteps(steps)
    assert scheduler.timesteps.tolist() == (shifted * 1000).astype(np.int64).tolist()


@pytest.mark.parametrize(
    ("guide_scale", "passes_high", "passes_low"),
    [
        ([3.0, 1.0], 1, 2),  # (low, high): diffusers alone would guide neither stage
        ([1.0, 1.0], 1, 1),  # every scale 1: uncond + 1*(cond - uncond) is cond, one pass
        ([0.5, 0.5], 2, 2),  # below 1 is still guidance (towards the negative prompt)
    ],
)
def test_guidance_runs_for_every_expert_that_is_guided(
    tiny_models: dict, guide_scale: list[float], passes_high: int, passes_low: int
) -> None:
    model = tiny_models["t2v-A14B"]
    inp = tiny_input("t2v-A14B", guide_scale=guide_scale)
    ran: list[str] = []
    comps = model.components
    with calls(comps.transformer, ran, "high_noise"), calls(comps.transformer_2, ran, "low_noise"):
        model.generate(inp)
    scheduler = scheduler_with_shift(comps.scheduler, inp.sample_shift)
    scheduler.set_timesteps(inp.sample_steps)
    high_steps = sum(1 for t in scheduler.timesteps if float(t) >= tiny_preset("t2v-A14B").boundary_ratio * 1000)
    low_steps = inp.sample_steps - high_steps
    assert ran.count("high_noise") == passes_high * high_steps
    assert ran.count("low_noise") == passes_low * low_steps


def test_guidance_below_one_changes_the_video(tiny_models: dict) -> None:
    model = tiny_models["ti2v-5B"]
    unguided = model.generate(tiny_input("ti2v-5B", guide_scale=1.0))
    weak = model.generate(tiny_input("ti2v-5B", guide_scale=0.5))
    assert not np.allclose(unguided, weak, atol=1e-4)
