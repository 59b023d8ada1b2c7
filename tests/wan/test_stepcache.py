"""Step caching (diffusers' hooks): fewer block evaluations, frames within a stated tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.wan.support import tiny_input, tiny_preset
from tests.wan.test_generate import calls
from wan.model import Cancelled, WanModel
from wan.speedups import Speedups, StepCacheSpec

TASK = "ti2v-5B"
STEPS = 10
# (spec, most attention evaluations of 20, tolerance on the [0, 1] frames against the uncached run)
CASES = [
    (StepCacheSpec(kind="first_block", threshold=0.08), 14, 5e-3),
    (StepCacheSpec(kind="first_block", threshold=0.2), 6, 2e-2),
    (StepCacheSpec(kind="taylorseer", interval=2, warmup_steps=3), 12, 2e-2),
]


def attention_runs(model: WanModel, **kwargs: object) -> tuple[np.ndarray, int]:
    """Frames, and how often the last block's self-attention really ran (a cached step skips it)."""
    ran: list[str] = []
    with calls(model.components.transformer.blocks[-1].attn1.to_q, ran, "attn"):
        frames = model.generate(tiny_input(TASK, sample_steps=STEPS), **kwargs)
    return frames, len(ran)


@pytest.fixture(scope="module")
def uncached(tiny_models: dict) -> np.ndarray:
    frames, runs = attention_runs(tiny_models[TASK])
    assert runs == 2 * STEPS  # cond + uncond every step
    return frames


@pytest.mark.parametrize(("spec", "most", "tol"), CASES, ids=lambda v: getattr(v, "kind", None) or str(v))
def test_fewer_block_evaluations_within_tolerance(
    tiny_root: Path, uncached: np.ndarray, spec: StepCacheSpec, most: int, tol: float
) -> None:
    model = WanModel.load(tiny_root / TASK, tiny_preset(TASK), speedups=Speedups(step_cache=spec))
    frames, runs = attention_runs(model)
    assert runs <= most
    assert np.abs(frames - uncached).max() <= tol
    # A cancelled job leaves no cached state behind: the next job is the same as the first.
    seen: list[object] = []
    with pytest.raises(Cancelled):
        model.generate(
            tiny_input(TASK, seed=3, sample_steps=STEPS), on_step=seen.append, should_cancel=lambda: len(seen) >= 4
        )
    again, runs_again = attention_runs(model)
    np.testing.assert_array_equal(again, frames)
    assert runs_again == runs


def test_first_block_cache_and_compile_are_refused_over_several_ranks() -> None:
    with pytest.raises(ValueError, match="taylorseer"):
        Speedups(step_cache=StepCacheSpec(kind="first_block")).check(experts=2, world_size=2)
    with pytest.raises(ValueError, match="compile_blocks needs world_size 1"):
        Speedups(compile_blocks=True).check(experts=2, world_size=2)
    Speedups(step_cache=StepCacheSpec(kind="taylorseer"), compile_blocks=True).check(experts=2, world_size=1)
    Speedups(step_cache=StepCacheSpec(kind="taylorseer")).check(experts=2, world_size=2)
