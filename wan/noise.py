"""Where a job's initial noise is drawn (`noise` per task, `wan22 generate --noise`).

`cpu`: a CPU generator; diffusers draws on it and moves the noise to the device, so a seed gives
the same noise, and the same video, on every kind of GPU and every world size. `device`: a
generator on the model's device, as the release's generate.py seeds it (`torch.Generator(device=
self.device)`), so on a GPU a seed gives the release's noise; but CUDA's random numbers depend on
the GPU model (the kernel's launch grid follows its multiprocessor count), so not the same noise on
every kind of GPU. On a CPU the two are the same.
"""

from __future__ import annotations

import torch

from wan.job import NOISE_DEVICES, NoiseDevice


def check_noise(value: str) -> NoiseDevice:
    if value not in NOISE_DEVICES:
        raise ValueError(f"noise must be one of {list(NOISE_DEVICES)}, got {value!r}")
    return value  # type: ignore[return-value]


def noise_generator(noise: NoiseDevice, device: torch.device, seed: int) -> torch.Generator:
    """The seeded generator a job's noise is drawn from, for a model on `device`."""
    return torch.Generator(device if noise == "device" else torch.device("cpu")).manual_seed(seed)
