"""Classifier-free guidance decided per expert and per step, by the Wan2.2 release's rule.

The release always combines both passes: `uncond + scale * (cond - uncond)`. At a scale of
exactly 1.0 that is the conditional prediction, so the unconditional pass can be skipped without
changing the result. diffusers instead decides once per job from `guidance_scale` (the
high-noise expert's) alone and only while it is above 1: with (high 1.0, low 3.5) the low-noise
expert silently loses its guidance, a scale below 1 is ignored, and with (high 3.5, low 1.0) the
low-noise expert runs an unconditional pass whose result is multiplied away. This mixin decides
from the expert that runs the step (the pipeline sets `_current_timestep` before the check):
a scale other than 1.0 runs both passes, 1.0 only the conditional one.
"""

from __future__ import annotations

from typing import Any


class PerExpertGuidance:
    _guidance_scale: float
    _guidance_scale_2: float | None
    _current_timestep: Any
    config: Any
    scheduler: Any

    @property
    def do_classifier_free_guidance(self) -> bool:
        high = self._guidance_scale
        low = self._guidance_scale_2 if self._guidance_scale_2 is not None else high
        t = self._current_timestep
        if t is None:  # prompt encoding: the negative prompt is needed if any expert guides
            return high != 1.0 or low != 1.0
        boundary = self.config.boundary_ratio
        if boundary is None or t >= boundary * self.scheduler.config.num_train_timesteps:
            return high != 1.0
        return low != 1.0


def cfg_parallel_refusal(cfg_degree: int, guide_scale: float, guide_scale_2: float | None) -> str | None:
    """Why a job cannot run with CFG parallelism, or None. Guidance in diffusers' order:
    `guide_scale` for the high-noise (or only) expert, `guide_scale_2` for the low-noise one
    (None: a single-expert model). An expert at exactly 1.0 runs the conditional pass alone, which
    the gang's two halves would both compute: such a job belongs on a task with cfg_degree 1."""
    if cfg_degree == 1:
        return None
    if guide_scale_2 is None:
        single = ["the"] if guide_scale == 1.0 else []
    else:
        named = (("the high-noise", guide_scale), ("the low-noise", guide_scale_2))
        single = [name for name, scale in named if scale == 1.0]
    if not single:
        return None
    return (
        f"cfg_degree {cfg_degree} runs the conditional and the unconditional pass of classifier-free guidance on "
        f"the two halves of the gang, but guidance 1.0 for {' and '.join(single)} expert runs the conditional "
        "pass alone (both halves would compute the same pass); use a guidance other than 1.0, or a task with "
        "cfg_degree 1 (sequence parallel over the whole gang)"
    )
