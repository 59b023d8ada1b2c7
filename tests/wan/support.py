"""Helpers shared by the wan tests: tiny presets and inputs."""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from wan.job import GenerationInput
from wan.presets import PRESETS, TaskPreset, derive_preset

TASKS = ("t2v-A14B", "i2v-A14B", "ti2v-5B")

# Small enough for 2 CPU cores: 5 frames (2 latent frames), 4 steps, a few hundred pixels.
TINY_OVERRIDES: dict[str, dict[str, object]] = {
    "t2v-A14B": {"sizes": ["32*32"], "frame_num": 5, "sample_steps": 4},
    "i2v-A14B": {"sizes": ["32*32"], "frame_num": 5, "sample_steps": 4},
    "ti2v-5B": {"sizes": ["64*32"], "frame_num": 5, "sample_steps": 4},
}


def tiny_preset(task: str) -> TaskPreset:
    return derive_preset(PRESETS[task], f"tiny-{task}", TINY_OVERRIDES[task])


def make_image(seed: int = 0, size: tuple[int, int] = (40, 40)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def tiny_input(task: str, *, seed: int = 7, image: Image.Image | None = None, **overrides: object) -> GenerationInput:
    preset = tiny_preset(task)
    if image is None and preset.needs_image:
        image = make_image()
    prompt = "a robot walks through a city at night"
    return GenerationInput.from_preset(preset, prompt, image=image, seed=seed, **overrides)


def cli_args(*argv: str) -> argparse.Namespace:
    """Parse a `wan22 ...` command line with the subcommands `wan.cli` registers."""
    from wan.cli import register

    parser = argparse.ArgumentParser(prog="wan22")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def run_cli(*argv: str) -> int:
    args = cli_args(*argv)
    return args.run(args)
