"""A resident Wan2.2 model that runs one job at a time, sharded over the caller's process group.

Denoising is diffusers' own `WanPipeline` / `WanImageToVideoPipeline` loop, asked for latents only:
the step-end callback reports progress and raises `Cancelled` (so a cancelled job never reaches the
VAE), and only rank 0 decodes the final latents.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from wan import accel
from wan.adapters import AdapterFiles, AdapterSwitcher, switch_mode
from wan.blockoffload import BlockOffloader
from wan.cfgparallel import split_passes
from wan.checkpoint import open_checkpoint
from wan.decode import decode_latents
from wan.guidance import cfg_parallel_refusal
from wan.job import Cancelled, GenerationInput, NoiseDevice, ParallelContext, StepInfo
from wan.loader import Components, load_components, scheduler_with_shift
from wan.noise import check_noise, noise_generator
from wan.offload import ExpertOffloader
from wan.offloadmode import OffloadMode, check_offload
from wan.parallel import (
    Degrees,
    all_agree,
    broadcast_object,
    check_tokens,
    degrees,
    enable_context_parallel,
    gang_mesh,
    pass_mesh,
    ranks_per_pass,
    shard_fsdp,
    world_mesh,
)
from wan.presets import TaskPreset, check_frame_num, negative_prompt_for
from wan.preview import clean_estimate, preview_jpeg
from wan.sizing import condition_image, fit_to_image
from wan.spec import ModelSpec, check_against_preset
from wan.speedups import Speedups
from wan.uneven import splits_unevenly, uneven_split

__all__ = ["Cancelled", "GenerationInput", "ParallelContext", "StepInfo", "WanModel"]

MAX_TEXT_TOKENS = 512  # Wan2.2's text_len


class WanModel:
    def __init__(
        self,
        preset: TaskPreset,
        comps: Components,
        parallel: ParallelContext,
        deg: Degrees,
        offloader: ExpertOffloader | BlockOffloader | None = None,
    ) -> None:
        self.preset, self.parallel, self.degrees = preset, parallel, deg
        self.device = torch.device(parallel.device)
        self.spec = ModelSpec.of(comps)
        self._comps = comps
        self._pipes = _build_pipelines(comps, preset)
        self.offloader = offloader  # None: every module stays on the device
        self.last_input: GenerationInput | None = None  # what the last job ran with (the seed rank 0 picked)
        self.speedups = Speedups()
        self.adapters: AdapterSwitcher | None = None  # per-job LoRA adapters (set by `load`)
        self._noise: NoiseDevice = "cpu"

    @property
    def noise(self) -> NoiseDevice:
        """Where each job's initial noise is drawn (`wan.job.NoiseDevice`); set it after `load`."""
        return self._noise

    @noise.setter
    def noise(self, value: str) -> None:
        self._noise = check_noise(value)

    def noise_generator(self, seed: int) -> torch.Generator:
        """The generator a job's noise is drawn from (`wan.noise`)."""
        return noise_generator(self._noise, self.device, seed)

    @classmethod
    def load(
        cls,
        ckpt_dir: str | Path,
        preset: TaskPreset,
        *,
        parallel: ParallelContext | None = None,
        dtype: torch.dtype | None = None,
        attention_backend: str | None = None,
        vae_tiling: bool = False,
        offload: OffloadMode = "none",
        offload_prefetch: int = 1,
        speedups: Speedups | None = None,
        lora_switch: str = "auto",
        lora_cache_bytes: int = 4 << 30,
    ) -> WanModel:
        """Load a diffusers-layout checkpoint once and keep it resident. With world_size > 1 the
        caller has already initialised torch.distributed; every rank calls this. `offload` keeps
        idle experts (and, for `model`, the text encoder) in host memory (`wan.offload`); `blocks`
        streams each expert's blocks through the device, `offload_prefetch` ahead (`wan.blockoffload`)."""
        parallel = parallel or ParallelContext()
        speedups = speedups or Speedups()
        offload = check_offload(offload, fsdp=parallel.fsdp and parallel.world_size > 1, fp8=speedups.fp8)
        if parallel.world_size > 1 and not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("world_size > 1 needs torch.distributed initialised first (see wan.distributed)")
        ckpt = open_checkpoint(ckpt_dir, parallel)  # read once per node, shared over the gang
        device = torch.device(parallel.device)
        dtype = dtype or (torch.float32 if device.type == "cpu" else torch.bfloat16)
        cpu = torch.device("cpu")
        fsdp = parallel.fsdp and parallel.world_size > 1
        encoder_on_cpu = parallel.text_encoder_on_cpu or fsdp or offload in ("model", "blocks")
        comps = load_components(
            ckpt,
            dtype=dtype,
            # FSDP shards from host memory, moving only this rank's shard to the device; offloaded
            # experts start in host memory and move in when they first run.
            transformer_device=cpu if (fsdp or offload != "none") else device,
            text_encoder_device=cpu if encoder_on_cpu else device,
            vae_device=device,
        )
        check_against_preset(ModelSpec.of(comps), preset)
        accel.before_shard(comps, speedups, parallel)  # LoRA fuse, FP8
        deg = _shard(comps, parallel, attention_backend)
        accel.after_shard(comps, speedups, device)  # step cache, regional compile
        if vae_tiling:
            comps.vae.enable_tiling()
        model = cls(preset, comps, parallel, deg, _offloader(comps, offload, device, offload_prefetch))
        model.speedups = speedups
        mode = switch_mode(lora_switch, fsdp=fsdp, fp8=speedups.fp8)
        model.adapters = AdapterSwitcher((comps.transformer, comps.transformer_2), mode, AdapterFiles(lora_cache_bytes))
        return model

    def generate(
        self,
        inp: GenerationInput,
        *,
        on_step: Callable[[StepInfo], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        preview_every: int = 0,
    ) -> np.ndarray | None:
        """Run one job. Returns float frames (F, H, W, 3) in [0, 1] on rank 0, None elsewhere.
        Raises Cancelled (on every rank, before any decode) when should_cancel() turns true."""
        started = time.monotonic()
        inp = self._agree_on_input(inp)
        # With an image the requested size is an area; the video follows the image (wan.sizing).
        inp = self.last_input = fit_to_image(inp, self.preset.kind, self.spec.vae_spatial, self.spec.patch[1])
        self._validate(inp)
        if all_agree(bool(should_cancel and should_cancel()), self.device):
            raise Cancelled(0, inp.sample_steps)
        pipe = self._pipes["i2v" if inp.image is not None else "t2v"]
        pipe.scheduler = scheduler_with_shift(self._comps.scheduler, inp.sample_shift)
        accel.before_job(self._comps)
        if self.adapters is not None:
            self.adapters.switch(inp.loras)  # same on every rank: each reads the files itself
        elif inp.loras:
            raise ValueError("this model was not loaded with adapter switching (WanModel.load)")
        callback = _StepCallback(self, inp.sample_steps, started, on_step, should_cancel, preview_every)
        # Ulysses only (ring refuses such jobs in `_validate`): cut into shards one token apart.
        uneven = splits_unevenly(self.spec.tokens(inp.width, inp.height, inp.frame_num), self.degrees.total)
        with torch.no_grad():
            offload = self._offload_scope(inp)
            with offload, uneven_split(self._experts(), uneven):
                latents = pipe(**self._call_kwargs(inp), callback_on_step_end=callback).frames
            if self.speedups.parallel_decode:  # every rank decodes its share of the tiles
                par = self.parallel
                return decode_latents(pipe, self._comps.vae, latents, self.device, par.rank, par.world_size)
            if not self.parallel.is_main:
                return None
            return self._decode(pipe, latents)

    def _offload_scope(self, inp: GenerationInput) -> contextlib.AbstractContextManager[object]:
        """The offloader's job scope; block offload is handed the job's forward plan to prefetch by."""
        if isinstance(self.offloader, BlockOffloader):
            return self.offloader.job(self.forward_plan(inp))
        return self.offloader.job() if self.offloader else contextlib.nullcontext()

    def forward_plan(self, inp: GenerationInput) -> list[str]:
        """The expert of each transformer forward a job runs on this rank, in order: per step one
        pass, or two where that step's expert guides (`wan.guidance`) and CFG is not split."""
        scheduler = scheduler_with_shift(self._comps.scheduler, inp.sample_shift)
        scheduler.set_timesteps(inp.sample_steps)
        high = inp.guide_scale
        low = high if inp.guide_scale_2 is None else inp.guide_scale_2
        plan = []
        for timestep in scheduler.timesteps:
            expert = self.expert_at(float(timestep))
            scale = low if expert == "low_noise" else high
            plan += [expert] * (2 if scale != 1.0 and self.degrees.cfg == 1 else 1)
        return plan

    def expert_at(self, timestep: float) -> str:
        """Which expert denoises at `timestep` (same rule as diffusers: high-noise while t >= boundary)."""
        if self.preset.boundary_ratio is None:
            return "single"
        boundary = self.preset.boundary_ratio * self._comps.scheduler.config.num_train_timesteps
        return "high_noise" if timestep >= boundary else "low_noise"

    @property
    def components(self) -> Components:
        return self._comps

    def _experts(self) -> list[torch.nn.Module]:
        return [t for t in (self._comps.transformer, self._comps.transformer_2) if t is not None]

    def _agree_on_input(self, inp: GenerationInput) -> GenerationInput:
        if self.parallel.is_main and inp.seed < 0:
            inp = replace(inp, seed=random.SystemRandom().randrange(2**31))
        return broadcast_object(inp, self.device)  # type: ignore[return-value]

    def _validate(self, inp: GenerationInput) -> None:
        multiple = self.spec.size_multiple
        if inp.width % multiple or inp.height % multiple or inp.width <= 0 or inp.height <= 0:
            raise ValueError(f"size {inp.width}*{inp.height}: width and height must be multiples of {multiple}")
        check_frame_num(inp.frame_num)
        if inp.sample_steps < 1:
            raise ValueError(f"sample_steps must be >= 1, got {inp.sample_steps}")
        if inp.image is None and self.preset.needs_image:
            raise ValueError(f"task {self.preset.name} needs a conditioning image")
        if inp.image is not None and "i2v" not in self._pipes:
            raise ValueError(f"task {self.preset.name} does not take an image")
        check_tokens(self.spec.tokens(inp.width, inp.height, inp.frame_num), self.degrees)
        low = inp.guide_scale if inp.guide_scale_2 is None else inp.guide_scale_2  # diffusers' default
        refusal = cfg_parallel_refusal(self.degrees.cfg, inp.guide_scale, low if self.spec.two_experts else None)
        if refusal:  # on every rank alike, before any collective
            raise ValueError(refusal)

    def _call_kwargs(self, inp: GenerationInput) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            prompt=inp.prompt,
            negative_prompt=negative_prompt_for(self.preset, inp.negative_prompt),
            height=inp.height,
            width=inp.width,
            num_frames=inp.frame_num,
            num_inference_steps=inp.sample_steps,
            # diffusers: guidance_scale -> high-noise `transformer`, guidance_scale_2 -> low-noise `transformer_2`.
            guidance_scale=inp.guide_scale,
            guidance_scale_2=inp.guide_scale_2 if self.preset.boundary_ratio is not None else None,
            generator=self.noise_generator(inp.seed),
            output_type="latent",
            callback_on_step_end_tensor_inputs=[],
            max_sequence_length=MAX_TEXT_TOKENS,
        )
        if inp.image is not None:
            kwargs["image"] = condition_image(self.preset.kind, inp.image, inp.width, inp.height)
        return kwargs

    def _decode(self, pipe: Any, latents: torch.Tensor) -> np.ndarray:
        """The decode of diffusers' pipelines, run on rank 0 only."""
        vae = self._comps.vae
        latents = latents.to(device=self.device, dtype=vae.dtype)
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
        video = vae.decode(latents / inv_std + mean, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


class _StepCallback:
    """diffusers' step-end callback: progress every step, then the cancel check."""

    def __init__(
        self,
        model: WanModel,
        total: int,
        started: float,
        on_step: Callable[[StepInfo], None] | None,
        should_cancel: Callable[[], bool] | None,
        preview_every: int = 0,
    ) -> None:
        self.model, self.total, self.started = model, total, started
        self.on_step, self.should_cancel = on_step, should_cancel
        self.preview_every = preview_every

    def _preview(self, pipe: Any, step: int, kwargs: dict[str, Any]) -> bytes | None:
        """Every `preview_every` steps but the last (the video itself follows); rank 0 only."""
        if not self.preview_every or step % self.preview_every or step >= self.total:
            return None
        estimate = clean_estimate(pipe, kwargs.get("latents"))
        return preview_jpeg(pipe, self.model.components.vae, estimate) if estimate is not None else None

    def __call__(self, pipe: Any, index: int, timestep: torch.Tensor, kwargs: dict[str, Any]) -> dict[str, Any]:
        step = index + 1
        if self.on_step is not None:
            expert = self.model.expert_at(float(timestep))
            preview = self._preview(pipe, step, kwargs)
            self.on_step(StepInfo(step, self.total, expert, time.monotonic() - self.started, preview))
        # Every rank takes part in this vote each step, so all of them stop at the same step.
        cancel = self.should_cancel is not None and self.should_cancel()
        if all_agree(cancel, self.model.device):
            raise Cancelled(step, self.total)
        return {}


def _shard(comps: Components, parallel: ParallelContext, attention_backend: str | None) -> Degrees:
    experts = [t for t in (comps.transformer, comps.transformer_2) if t is not None]
    if attention_backend:
        for expert in experts:
            expert.set_attention_backend(attention_backend)
    ranks_per_pass(parallel)  # refuses a cfg_degree the gang cannot be split by, at world size 1 too
    if parallel.world_size == 1:
        return Degrees(ulysses=1, ring=1)
    device = torch.device(parallel.device)
    deg = degrees(parallel, comps.transformer.config.num_attention_heads, attention_backend)
    mesh = gang_mesh(deg, device)
    for expert in experts:
        if deg.total > 1:
            enable_context_parallel(expert, mesh, deg)
        if deg.cfg > 1:
            split_passes(expert, half=mesh.get_local_rank("cfg"), pair=mesh["cfg"].get_group())
        if parallel.fsdp and deg.total > 1:  # over the ranks of this rank's pass: a half runs on its own
            shard_fsdp(expert, expert.blocks, pass_mesh(mesh))
    if parallel.fsdp and not parallel.text_encoder_on_cpu:  # every rank encodes both prompts
        shard_fsdp(comps.text_encoder, comps.text_encoder.encoder.block, world_mesh(device))
    return deg


def _offloader(
    comps: Components, mode: OffloadMode, device: torch.device, prefetch: int
) -> ExpertOffloader | BlockOffloader | None:
    if mode == "none":
        return None
    names = ["single"] if comps.transformer_2 is None else ["high_noise", "low_noise"]
    experts = dict(zip(names, [comps.transformer, comps.transformer_2], strict=False))
    if mode == "blocks":
        return BlockOffloader(experts, device, prefetch)
    return ExpertOffloader(experts, mode, device)


def _build_pipelines(comps: Components, preset: TaskPreset) -> dict[str, Any]:
    """The diffusers pipelines over the shared resident modules: t2v for prompts, i2v for images."""
    from wan.pipelines import ReleaseWanImageToVideoPipeline, ReleaseWanPipeline

    common = dict(
        tokenizer=comps.tokenizer,
        text_encoder=comps.text_encoder,
        vae=comps.vae,
        scheduler=comps.scheduler,
        transformer=comps.transformer,
        transformer_2=comps.transformer_2,
        boundary_ratio=preset.boundary_ratio,
        expand_timesteps=preset.kind == "ti2v",
    )
    pipes: dict[str, Any] = {}
    if preset.kind != "i2v":
        pipes["t2v"] = ReleaseWanPipeline(**common)
    if preset.kind != "t2v":
        # Wan2.2's i2v conditions on VAE latents only: no CLIP image encoder.
        pipes["i2v"] = ReleaseWanImageToVideoPipeline(**common, image_encoder=None, image_processor=None)
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    return pipes
