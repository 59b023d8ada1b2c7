"""The sampling schedule of the Wan2.2 release, on diffusers' flow UniPC solver.

diffusers' `UniPCMultistepScheduler(use_flow_sigmas=True)` spaces the unshifted sigmas from 1 down
to 1/T, the release's `FlowUniPCMultistepScheduler` from 1 - 1/T down to 0 (T = training
timesteps). Both shift and truncate them to integer timesteps the same way and share the UniPC
update, so handing diffusers the release's sigmas gives the release's timesteps and steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from diffusers import UniPCMultistepScheduler


def release_sigmas(steps: int, num_train_timesteps: int = 1000) -> np.ndarray:
    """The release's unshifted sigmas: `steps` values evenly spaced from 1 - 1/T towards 0.

    The release reads its top sigma back from a float32 table, so the start is 1 - 1/T rounded to
    float32; with float64's 0.999 some timesteps truncate one lower (665 instead of 666)."""
    top = float(np.float32(1.0 - 1.0 / num_train_timesteps))
    return np.linspace(top, 0.0, steps + 1)[:-1].copy()


class ReleaseFlowUniPC(UniPCMultistepScheduler):
    """diffusers' flow UniPC with the release's sigma spacing; the shift is `flow_shift`."""

    def set_timesteps(self, num_inference_steps: int | None = None, device: Any = None, **kwargs: Any) -> None:
        if kwargs.get("sigmas") is None and num_inference_steps is not None:
            kwargs["sigmas"] = release_sigmas(num_inference_steps, self.config.num_train_timesteps)
        super().set_timesteps(num_inference_steps, device=device, **kwargs)


def release_scheduler(scheduler: Any, shift: float) -> Any:
    """A fresh scheduler for one job with the job's shift. A checkpoint's flow UniPC scheduler gets
    the release's spacing; any other scheduler class is kept as it is (only the shift is set)."""
    if isinstance(scheduler, UniPCMultistepScheduler) and scheduler.config.get("use_flow_sigmas"):
        return ReleaseFlowUniPC.from_config(scheduler.config, flow_shift=shift)
    key = "flow_shift" if "flow_shift" in scheduler.config else "shift"
    return type(scheduler).from_config(scheduler.config, **{key: shift})
