"""The VAE decode spread over the gang's ranks: diffusers' tiled decode, its tiles dealt out.

The Wan VAE cannot be split exactly in space (its mid block attends over each whole frame) nor in
time (causal convolutions carry caches from frame to frame). diffusers' tiled decode
(`AutoencoderKLWan.tiled_decode`, what `vae_tiling` runs) already decodes overlapping spatial
tiles independently and blends their seams; here each rank decodes every world_size-th tile,
rank 0 gathers them and blends exactly as diffusers does. The result is the tiled decode of one
rank, whatever the world size; the decode time is divided by up to the number of ranks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def tile_origins(vae: Any, height: int, width: int) -> list[tuple[int, int]]:
    """The latent (row, column) where each tile starts, in diffusers' order."""
    ratio = vae.spatial_compression_ratio
    stride_h, stride_w = vae.tile_sample_stride_height // ratio, vae.tile_sample_stride_width // ratio
    return [(i, j) for i in range(0, height, stride_h) for j in range(0, width, stride_w)]


def needs_tiles(vae: Any, z: torch.Tensor) -> bool:
    ratio = vae.spatial_compression_ratio
    height, width = z.shape[-2:]
    return height > vae.tile_sample_min_height // ratio or width > vae.tile_sample_min_width // ratio


def _decode_tile(vae: Any, z: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """One tile, as in diffusers' `tiled_decode` (frame by frame with the causal caches)."""
    ratio = vae.spatial_compression_ratio
    tile_h, tile_w = vae.tile_sample_min_height // ratio, vae.tile_sample_min_width // ratio
    vae.clear_cache()
    frames = []
    for k in range(z.shape[2]):
        vae._conv_idx = [0]
        tile = vae.post_quant_conv(z[:, :, k : k + 1, i : i + tile_h, j : j + tile_w])
        frames.append(vae.decoder(tile, feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=(k == 0)))
    vae.clear_cache()
    return torch.cat(frames, dim=2)


def decode_over_ranks(vae: Any, z: torch.Tensor, rank: int, world_size: int) -> torch.Tensor | None:
    """The tiled decode of `z` (normalised latents, the same on every rank), each rank decoding its
    share of the tiles. Every rank must call it; rank 0 gets the video in [-1, 1], the others None."""
    if not needs_tiles(vae, z):  # one tile: nothing to share
        return vae.decode(z, return_dict=False)[0] if rank == 0 else None
    origins = tile_origins(vae, z.shape[3], z.shape[4])
    mine = {n: _decode_tile(vae, z, i, j) for n, (i, j) in enumerate(origins) if n % world_size == rank}
    tiles = _gather_tiles(mine, len(origins), rank, world_size, z.device)
    if tiles is None:
        return None
    return _blend(vae, z, origins, tiles)


def _gather_tiles(
    mine: dict[int, torch.Tensor], count: int, rank: int, world_size: int, device: torch.device
) -> dict[int, torch.Tensor] | None:
    if world_size == 1:
        return mine
    # Tiles at the right and bottom edges are smaller: pad every tile to the largest, send the shapes too.
    shapes: list[Any] = [None] * world_size
    dist.all_gather_object(shapes, {n: tuple(t.shape) for n, t in mine.items()})
    every = {n: shape for part in shapes for n, shape in part.items()}
    full = tuple(max(shape[d] for shape in every.values()) for d in range(5))
    per_rank = -(-count // world_size)
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    sample = next(iter(mine.values())) if mine else None
    dtype = sample.dtype if sample is not None else torch.float32
    send = torch.zeros((per_rank, *full), dtype=dtype, device=comm)
    for slot, n in enumerate(sorted(mine)):
        tile = mine[n]
        send[slot, :, :, : tile.shape[2], : tile.shape[3], : tile.shape[4]] = tile.to(comm)
    received = [torch.empty_like(send) for _ in range(world_size)] if rank == 0 else None
    dist.gather(send, received, dst=0)
    if received is None:
        return None
    tiles = {}
    for source, block in enumerate(received):
        for slot, n in enumerate(range(source, count, world_size)):
            shape = every[n]
            tiles[n] = block[slot, :, :, : shape[2], : shape[3], : shape[4]].to(device)
    return tiles


def _blend(vae: Any, z: torch.Tensor, origins: list[tuple[int, int]], tiles: dict[int, torch.Tensor]) -> torch.Tensor:
    """diffusers' seam blending and crop (`tiled_decode`), over the gathered tiles."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    ratio, patch = vae.spatial_compression_ratio, vae.config.patch_size
    sample_h, sample_w = z.shape[3] * ratio, z.shape[4] * ratio
    stride_h, stride_w = vae.tile_sample_stride_height, vae.tile_sample_stride_width
    min_h, min_w = vae.tile_sample_min_height, vae.tile_sample_min_width
    if patch is not None:
        sample_h, sample_w, stride_h, stride_w = (
            sample_h // patch,
            sample_w // patch,
            stride_h // patch,
            stride_w // patch,
        )
        min_h, min_w = min_h // patch, min_w // patch
    blend_h, blend_w = min_h - stride_h, min_w - stride_w
    row_starts = sorted({i for i, _ in origins})
    columns = len(origins) // len(row_starts)
    rows = [[tiles[r * columns + c] for c in range(columns)] for r in range(len(row_starts))]
    result_rows = []
    for i, row in enumerate(rows):
        result_row = []
        for j, tile in enumerate(row):
            if i > 0:
                tile = vae.blend_v(rows[i - 1][j], tile, blend_h)
            if j > 0:
                tile = vae.blend_h(row[j - 1], tile, blend_w)
            result_row.append(tile[:, :, :, :stride_h, :stride_w])
        result_rows.append(torch.cat(result_row, dim=-1))
    dec = torch.cat(result_rows, dim=3)[:, :, :, :sample_h, :sample_w]
    if patch is not None:
        dec = unpatchify(dec, patch_size=patch)
    return torch.clamp(dec, min=-1.0, max=1.0)


def decode_latents(pipe: Any, vae: Any, latents: torch.Tensor, device: torch.device, rank: int, world_size: int) -> Any:
    """What `WanModel` does after denoising, with the decode shared by every rank: denormalise,
    decode over the ranks, post-process on rank 0. Returns float frames on rank 0, None elsewhere."""
    latents = latents.to(device=device, dtype=vae.dtype)
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
    video = decode_over_ranks(vae, latents / inv_std + mean, rank, world_size)  # as diffusers' pipelines
    if video is None:
        return None
    return pipe.video_processor.postprocess_video(video, output_type="np")[0]
