"""Classifier-free guidance decided per expert, so a guidance of 1.0 never runs the unconditional pass.

diffusers' Wan pipelines decide once per job from `guidance_scale` (the high-noise expert's) alone:
with (high 1.0, low 3.5) the low-noise expert silently loses its guidance, and with (high 3.5,
low 1.0) it runs an unconditional pass whose result is multiplied away. These subclasses decide
per step from the expert that runs it (the pipeline sets `_current_timestep` before the check):
guidance > 1 runs both passes, guidance <= 1 only the conditional one (diffusers' own rule).
At 1.0 the skipped pass would have given `uncond + 1.0 * (cond - uncond) = cond`: exact.
"""

from __future__ import annotations

from typing import Any

from diffusers import WanImageToVideoPipeline, WanPipeline


class _PerExpertGuidance:
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
            return max(high, low) > 1.0
        boundary = self.config.boundary_ratio
        if boundary is None or t >= boundary * self.scheduler.config.num_train_timesteps:
            return high > 1.0
        return low > 1.0


class GuidedWanPipeline(_PerExpertGuidance, WanPipeline):  # type: ignore[misc]
    pass


class GuidedWanImageToVideoPipeline(_PerExpertGuidance, WanImageToVideoPipeline):  # type: ignore[misc]
    pass
