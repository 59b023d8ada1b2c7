"""diffusers' Wan pipelines with the two behaviours of the Wan2.2 release they lack.

- Guidance: the release's rule, decided per expert (`wan.guidance`): diffusers would drop the
  low-noise expert's guidance when the high-noise scale is 1 and ignore scales below 1.
- Conditioning image: the release sizes and resamples the first frame itself (`wan.sizing`); the
  i2v pipeline takes that tensor as it is instead of resizing it again.
"""

from __future__ import annotations

import functools
from typing import Any

from diffusers import WanImageToVideoPipeline, WanPipeline
from diffusers.video_processor import VideoProcessor

from wan.guidance import PerExpertGuidance


class ReleaseWanPipeline(PerExpertGuidance, WanPipeline):
    """Text to video (and ti2v-5B without an image)."""


class ReleaseWanImageToVideoPipeline(PerExpertGuidance, WanImageToVideoPipeline):
    """Image to video; `image` is the (1, 3, H, W) tensor of `wan.sizing.condition_image`."""

    # diffusers reads the modules a pipeline holds from its __init__ signature: keep the parent's.
    @functools.wraps(WanImageToVideoPipeline.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.video_processor = PreparedImageProcessor(vae_scale_factor=self.vae_scale_factor_spatial)


class PreparedImageProcessor(VideoProcessor):
    """Passes an already prepared first-frame tensor through untouched: diffusers would resize it
    with its own filter and guess its value range from its minimum. Decoding is unchanged."""

    def preprocess(self, image: Any, height: int | None = None, width: int | None = None, **kwargs: Any) -> Any:
        import torch

        if isinstance(image, torch.Tensor):
            if image.ndim != 4 or image.shape[-2:] != (height, width):
                raise ValueError(f"prepared image has shape {tuple(image.shape)}, expected (1, 3, {height}, {width})")
            return image.float()
        return super().preprocess(image, height=height, width=width, **kwargs)
