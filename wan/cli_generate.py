"""`wan22 generate`: one job on this machine, optionally over N local processes."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wan.guidance import cfg_parallel_refusal
from wan.job import GenerationInput, NoiseDevice, ParallelContext, StepInfo
from wan.layout import require_diffusers_layout
from wan.presets import PRESETS, TaskPreset, check_frame_num, parse_size
from wan.sizing import fit_to_image

if TYPE_CHECKING:
    from wan.model import WanModel

OUTPUT_SUFFIXES = (".mp4", ".npy")


@dataclass
class LocalJob:
    """Everything a rank needs; picklable so spawned processes get it."""

    preset: TaskPreset
    ckpt: Path
    inp: GenerationInput
    out: Path
    poster: Path | None
    device: str | None
    cfg_degree: int
    ulysses_degree: int | None
    fsdp: bool
    t5_cpu: bool
    offload: str
    offload_prefetch: int
    attention_backend: str | None
    vae_tiling: bool
    noise: NoiseDevice = "cpu"


def run(args: argparse.Namespace) -> int:
    job = _job_from_args(args)
    if args.world_size < 1:
        raise ValueError("--world-size must be >= 1")
    _check_sequence_split(job, args.world_size)
    if args.world_size == 1:
        rank_main(0, 1, 0, job)
    else:
        from wan.distributed import spawn_local

        spawn_local("wan.cli_generate:rank_main", args.world_size, job)
    print(job.out)
    return 0


def _job_from_args(args: argparse.Namespace) -> LocalJob:
    preset = PRESETS[args.task]
    ckpt = require_diffusers_layout(args.ckpt)
    if args.out.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out must end in one of {OUTPUT_SUFFIXES}, got {args.out.name}")
    size = parse_size(args.size or preset.sizes[0])
    _check_size(preset, size)
    if args.frames is not None:
        check_frame_num(args.frames)
    if preset.needs_image and args.image is None:
        raise ValueError(f"task {preset.name} needs --image")
    if args.image is not None and not preset.accepts_image:
        raise ValueError(f"task {preset.name} does not take --image")
    inp = GenerationInput.from_preset(
        preset,
        args.prompt,
        negative_prompt=args.negative_prompt,
        image=_open_image(args.image),
        size=size,
        frame_num=args.frames,
        sample_steps=args.steps,
        sample_shift=args.shift,
        guide_scale=args.guide_scale,
        seed=args.seed,
    )
    return LocalJob(
        preset=preset,
        ckpt=ckpt,
        inp=inp,
        out=args.out,
        poster=args.poster,
        device=args.device,
        cfg_degree=args.cfg_degree,
        ulysses_degree=args.ulysses_degree,
        fsdp=args.fsdp,
        t5_cpu=args.t5_cpu,
        offload=args.offload,
        offload_prefetch=args.offload_prefetch,
        attention_backend=args.attention_backend,
        vae_tiling=args.vae_tiling,
        noise=args.noise,
    )


def _check_size(preset: TaskPreset, size: tuple[int, int]) -> None:
    width, height = size
    if width % preset.size_multiple or height % preset.size_multiple:
        raise ValueError(f"size {width}*{height}: width and height must be multiples of {preset.size_multiple}")
    if f"{width}*{height}" not in preset.sizes:
        print(
            f"warning: {width}*{height} is not one of {preset.name}'s sizes {list(preset.sizes)}; quality may suffer",
            file=sys.stderr,
        )


def _check_sequence_split(job: LocalJob, world_size: int) -> None:
    """The checks WanModel makes on every rank, made once here so a bad request fails before spawning."""
    refusal = cfg_parallel_refusal(job.cfg_degree, job.inp.guide_scale, _low_noise_guidance(job))
    if refusal:
        raise ValueError(refusal)
    if world_size % job.cfg_degree:
        raise ValueError(f"--cfg-degree {job.cfg_degree} must divide --world-size {world_size}")
    per_pass = world_size // job.cfg_degree
    if per_pass == 1:
        return
    heads = json.loads((job.ckpt / "transformer" / "config.json").read_text())["num_attention_heads"]
    ulysses = job.ulysses_degree or per_pass
    if heads % ulysses or per_pass % ulysses:
        raise ValueError(
            f"Ulysses degree {ulysses} must divide the {heads} heads and the {per_pass} ranks of a pass "
            f"(world size {world_size} / CFG degree {job.cfg_degree})"
        )
    multiple = job.preset.size_multiple
    inp = fit_to_image(job.inp, job.preset.kind, job.preset.vae_stride, job.preset.patch_size)
    tokens = ((inp.frame_num - 1) // 4 + 1) * (inp.width // multiple) * (inp.height // multiple)
    # Ulysses alone takes any token count (wan.uneven); ring attention needs equal shards.
    if per_pass > ulysses and tokens % per_pass:
        raise ValueError(
            f"{tokens} transformer tokens do not split over {per_pass} ranks, which ring attention needs; "
            "change size or frames, or run Ulysses only (--ulysses-degree = world size / CFG degree)"
        )


def _low_noise_guidance(job: LocalJob) -> float | None:
    if job.preset.boundary_ratio is None:
        return None
    return job.inp.guide_scale if job.inp.guide_scale_2 is None else job.inp.guide_scale_2


def _open_image(path: Path | None):
    if path is None:
        return None
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def rank_main(rank: int, world_size: int, port: int, job: LocalJob) -> None:
    """One rank: join the group (if any), load, generate; rank 0 writes the outputs."""
    from wan.distributed import default_device, destroy_group, init_group

    device = job.device or default_device(rank)
    if world_size > 1:
        ctx = init_group("127.0.0.1", port, rank, world_size, device=device)
    else:
        ctx = ParallelContext(device=device)
    ctx.ulysses_degree, ctx.fsdp, ctx.text_encoder_on_cpu = job.ulysses_degree, job.fsdp, job.t5_cpu
    ctx.cfg_degree = job.cfg_degree
    try:
        model = load_model(job, ctx)
        bar = _ProgressBar(job.inp.sample_steps) if rank == 0 else None
        frames = model.generate(job.inp, on_step=bar)
        if bar is not None:
            bar.close()
        if frames is not None:
            write_outputs(frames, job)
    finally:
        destroy_group()


def load_model(job: LocalJob, ctx: ParallelContext) -> WanModel:
    """The model as this job asks for it, on this rank."""
    from wan.model import WanModel

    model = WanModel.load(
        job.ckpt,
        job.preset,
        parallel=ctx,
        attention_backend=job.attention_backend,
        vae_tiling=job.vae_tiling,
        offload=job.offload,  # type: ignore[arg-type]
        offload_prefetch=job.offload_prefetch,
    )
    model.noise = job.noise
    return model


class _ProgressBar:
    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc="denoising", unit="step", file=sys.stderr)

    def __call__(self, info: StepInfo) -> None:
        self._bar.set_postfix(expert=info.expert, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def write_outputs(frames: np.ndarray, job: LocalJob) -> None:
    from wan.video import encode_mp4, poster_image

    job.out.parent.mkdir(parents=True, exist_ok=True)
    if job.out.suffix == ".npy":
        np.save(job.out, frames)
    else:
        job.out.write_bytes(encode_mp4(frames, job.preset.fps))
    if job.poster is not None:
        fmt = "png" if job.poster.suffix.lower() == ".png" else "jpeg"
        job.poster.write_bytes(poster_image(frames, fmt))
