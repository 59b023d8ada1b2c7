"""Guidance is decided per expert: 1.0 skips the unconditional pass (counted), and stays exact."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
from diffusers import WanPipeline

from tests.wan.support import tiny_input
from tests.wan.test_generate import calls
from wan.model import StepInfo


def run_counting(model, inp) -> tuple[np.ndarray, list[str], list[str]]:
    ran: list[str] = []
    steps: list[StepInfo] = []
    comps = model.components
    low = comps.transformer_2 or comps.transformer  # single-expert models: one module, counted once
    with (
        calls(comps.transformer, ran, "high_noise"),
        calls(low, ran, "low_noise") if low is not comps.transformer else nullcontext(),
    ):
        frames = model.generate(inp, on_step=steps.append)
    return frames, ran, [s.expert for s in steps]


@pytest.mark.parametrize(
    ("high", "low"),
    [(1.0, 1.0), (4.0, 3.0), (4.0, 1.0), (1.0, 3.5)],
)
def test_each_expert_runs_the_unconditional_pass_only_when_it_guides(
    tiny_models: dict, high: float, low: float
) -> None:
    model = tiny_models["t2v-A14B"]
    _, ran, experts = run_counting(model, tiny_input("t2v-A14B", guide_scale=[low, high]))  # Wan's (low, high)
    passes = {"high_noise": 2 if high != 1 else 1, "low_noise": 2 if low != 1 else 1}
    assert ran == [e for e in experts for _ in range(passes[e])]
    assert len(ran) == sum(passes[e] for e in experts)


def test_single_expert_guidance_one_halves_the_calls(tiny_models: dict) -> None:
    _, ran, experts = run_counting(tiny_models["ti2v-5B"], tiny_input("ti2v-5B", guide_scale=1.0))
    assert len(ran) == len(experts) == 4


@pytest.mark.parametrize(("high", "low"), [(1.0, 1.0), (1.0, 3.5), (4.0, 1.0)])
def test_skipping_is_exact(tiny_models: dict, high: float, low: float) -> None:
    """Against diffusers' stock pipeline made to run every unconditional pass (a guidance a hair
    above 1.0 where ours is 1.0): the same frames. With (high 1.0, low 3.5) the stock pipeline
    would drop the low-noise expert's guidance altogether; ours keeps it."""
    model = tiny_models["t2v-A14B"]
    frames = model.generate(tiny_input("t2v-A14B", guide_scale=[low, high]))
    bump = lambda g: 1.0 + 1e-7 if g == 1.0 else g  # noqa: E731
    pipe = model._pipes["t2v"]
    model._pipes["t2v"] = WanPipeline(**pipe.components, boundary_ratio=pipe.config.boundary_ratio)
    model._pipes["t2v"].set_progress_bar_config(disable=True)
    try:
        expected = model.generate(tiny_input("t2v-A14B", guide_scale=[bump(low), bump(high)]))
    finally:
        model._pipes["t2v"] = pipe
    np.testing.assert_allclose(frames, expected, atol=1e-5)
    stock_without_low_guidance = model.generate(tiny_input("t2v-A14B", guide_scale=[1.0, 1.0]))
    if low != 1.0:
        assert np.abs(frames - stock_without_low_guidance).max() > 1e-3
