"""The decode shared over ranks is diffusers' tiled decode (one rank here; two in test_distributed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.wan.support import tiny_input, tiny_preset
from wan.decode import decode_over_ranks, tile_origins
from wan.model import WanModel
from wan.speedups import Speedups

SMALL_TILES = dict(
    tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_stride_height=16, tile_sample_stride_width=16
)


@pytest.mark.parametrize("task", ["t2v-A14B", "ti2v-5B"])
def test_tiles_decoded_and_blended_like_diffusers(tiny_root: Path, task: str) -> None:
    model = WanModel.load(tiny_root / task, tiny_preset(task))
    vae = model.components.vae
    vae.enable_tiling(**SMALL_TILES)
    z = torch.randn(1, vae.config.z_dim, 2, 6, 8, generator=torch.Generator().manual_seed(0))
    assert len(tile_origins(vae, 6, 8)) > 4  # really tiled
    with torch.no_grad():
        expected = vae.tiled_decode(z, return_dict=False)[0]
        ours = decode_over_ranks(vae, z, 0, 1)
    assert ours is not None
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_parallel_decode_on_one_rank_is_the_tiled_decode(tiny_root: Path) -> None:
    task = "t2v-A14B"
    inp = tiny_input(task, size=(64, 48))
    tiled = WanModel.load(tiny_root / task, tiny_preset(task), vae_tiling=True)
    shared = WanModel.load(tiny_root / task, tiny_preset(task), speedups=Speedups(parallel_decode=True))
    for model in (tiled, shared):
        model.components.vae.enable_tiling(**SMALL_TILES)
    np.testing.assert_array_equal(shared.generate(inp), tiled.generate(inp))
