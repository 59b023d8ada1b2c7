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
