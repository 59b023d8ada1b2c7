"""Previews while a job runs: the first frame of the current clean-video estimate, decoded by the
VAE and downscaled to a small JPEG. The estimate is the x0 prediction flow UniPC keeps for its
multistep update (`scheduler.model_outputs[-1]`), so a preview costs one single-frame VAE decode
and no extra transformer pass; under other schedulers it falls back to the current latents."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from PIL import Image

MAX_SIDE = 256  # pixels on the longer side
MAX_BYTES = 32 * 1024
QUALITIES = (75, 55, 35)  # tried in turn until the JPEG fits in MAX_BYTES


def clean_estimate(pipe: Any, latents: torch.Tensor | None) -> torch.Tensor | None:
    outputs = getattr(pipe.scheduler, "model_outputs", None) or []
    estimate = next((o for o in reversed(outputs) if o is not None), None)
    return estimate if estimate is not None else latents


def preview_jpeg(pipe: Any, vae: Any, estimate: torch.Tensor) -> bytes:
    """The first latent frame decoded, downscaled, as a JPEG of at most MAX_BYTES."""
    first = estimate[:, :, :1].to(device=vae.device, dtype=vae.dtype)
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(first.device, first.dtype)
    std = torch.tensor(vae.config.latents_std).view(shape).to(first.device, first.dtype)
    with torch.no_grad():
        frame = vae.decode(first * std + mean, return_dict=False)[0]
    pixels = pipe.video_processor.postprocess_video(frame, output_type="np")[0][0]
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8))
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
    for quality in QUALITIES:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= MAX_BYTES:
            break
    return buffer.getvalue()
