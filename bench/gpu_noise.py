"""A job's initial noise on a GPU, `noise = "cpu"` against `noise = "device"` (docs/models.md).

    python bench/gpu_noise.py [--smoke-cpu] [--seed 42]

Draws the noise of an A14B 480P job (16 x 21 x 60 x 104 latents, float32) as the pipeline does
(diffusers' `randn_tensor`, a batch of one, from `wan.noise`'s generator) for each setting, and as
the release's generate.py does (`torch.randn` of (C, F, H, W) on a generator seeded on the GPU).
Checks that `cpu` on the GPU is the CPU host's draw bit for bit (the same video on any GPU kind)
and that `device` is the release's draw (the release's video for the same seed). Exits 1 if not.
`--smoke-cpu` runs it on the CPU, where both settings are the same draw.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the wan package, as for the other benches

from diffusers.utils.torch_utils import randn_tensor

from wan.noise import noise_generator

LATENTS_480P = (16, 21, 60, 104)  # channels, (81 - 1) / 4 + 1 frames, 480 / 8, 832 / 8


def pipeline_noise(noise: str, device: torch.device, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    generator = noise_generator(noise, device, seed)  # type: ignore[arg-type]
    return randn_tensor((1, *shape), generator=generator, device=device, dtype=torch.float32)[0]


def release_noise(device: torch.device, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(shape, dtype=torch.float32, device=device, generator=generator)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-cpu", action="store_true", help="check the script on the CPU")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if not args.smoke_cpu and not torch.cuda.is_available():
        print("bench/gpu_noise.py needs a CUDA GPU (or --smoke-cpu)")
        return 2
    device = torch.device("cpu" if args.smoke_cpu else "cuda")
    shape = (16, 2, 4, 4) if args.smoke_cpu else LATENTS_480P
    host = pipeline_noise("cpu", torch.device("cpu"), args.seed, shape)
    cpu = pipeline_noise("cpu", device, args.seed, shape)
    dev = pipeline_noise("device", device, args.seed, shape)
    release = release_noise(device, args.seed, shape)
    checks = {
        "noise cpu: the CPU host's draw": torch.equal(cpu.cpu(), host),
        "noise device: the release's draw": torch.equal(dev, release),
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"noise on {name}, seed {args.seed}, latents {'x'.join(map(str, shape))}:")
    for what, ok in checks.items():
        print(f"  {what}: {'yes' if ok else 'NO'}")
    same = torch.equal(dev.cpu(), host)
    print(f"  cpu and device settings draw {'the same' if same else 'different'} noise on this device")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
