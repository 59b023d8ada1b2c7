"""The per-option rows of bench/gpu_step.py: each speed option on a fresh model against baseline."""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import torch

from wan.compile import compile_blocks
from wan.fp8 import fp8_unsupported, quantize_fp8
from wan.speedups import StepCacheSpec
from wan.stepcache import enable_step_cache, reset_step_cache


def run_options(shape, device: torch.device, dtype: torch.dtype, args: argparse.Namespace, backend: str, peak) -> None:
    import gpu_step as gs

    names = gs.OPTIONS if args.options == "all" else tuple(o.strip() for o in args.options.split(",") if o.strip())
    unknown = set(names) - set(gs.OPTIONS)
    if unknown:
        raise SystemExit(f"unknown options {sorted(unknown)}; known: {', '.join(gs.OPTIONS)}")
    batch = gs.inputs(shape, device, dtype)
    measure = MEASURE | {"cfg2": functools.partial(_cfg2, shape=shape, backend=backend)}
    full_step_flops = 2 * shape.forward_flops()
    rows: list[tuple[str, str]] = []
    base: float | None = None
    for name in ("baseline", *[n for n in names if n != "baseline"]):
        model = gs.build(shape, device, dtype)
        model.set_attention_backend(backend)
        try:
            seconds = measure[name](model, batch, args, device)
        except Refused as exc:
            rows.append((name, f"refused: {exc}"))
            print(f"  {name}: refused ({exc})", flush=True)
            continue
        finally:
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
        base = base or seconds
        tflops = full_step_flops / seconds / 1e12
        mfu = f"{100 * tflops / peak / GPUS.get(name, 1):5.1f}%" if peak else "   n/a"  # per GPU
        rows.append((name, f"{seconds:9.4f} {tflops:9.3g} {mfu:>7} {base / seconds:8.2f}x"))
        print(f"  {name}: {seconds:.4f} s/step", flush=True)
    print(f"\n{'option':<11} {'s/step':>9} {'TFLOP/s':>9} {'MFU':>7} {'speedup':>9}")
    for name, text in rows:
        print(f"{name:<11} {text}")


class Refused(Exception):
    pass


def _baseline(model, batch, args, device) -> float:
    import gpu_step as gs

    return gs.step_seconds(model, batch, args.iters, device)


def _guidance1(model, batch, args, device) -> float:
    import gpu_step as gs

    return gs.step_seconds(model, batch, args.iters, device, forwards=1)


def _compile(model, batch, args, device) -> float:
    import gpu_step as gs

    # The dry run on a CPU checks the wiring with dynamo alone; a GPU compiles with inductor.
    backend = "inductor" if device.type == "cuda" else "aot_eager"
    compile_blocks([model], backend=backend)
    started = time.perf_counter()
    gs.step_seconds(model, batch, 1, device)  # compiles (its warm-up run)
    print(f"  compile: {time.perf_counter() - started:.1f} s to compile ({backend})", flush=True)
    return gs.step_seconds(model, batch, args.iters, device)


def _fp8(model, batch, args, device) -> float:
    import gpu_step as gs

    reason = fp8_unsupported(device)
    if reason:
        raise Refused(reason)
    quantize_fp8([model], device)
    return gs.step_seconds(model, batch, args.iters, device)


def _taylorseer(model, batch, args, device) -> float:
    import gpu_step as gs

    enable_step_cache([model], StepCacheSpec(kind="taylorseer", interval=2, warmup_steps=2))
    times = []
    with torch.no_grad():
        for _ in range(2):  # the first pass warms up
            reset_step_cache([model])
            gs.sync(device)
            started = time.perf_counter()
            for step in range(args.cache_steps):
                for context in ("cond", "uncond"):
                    with model.cache_context(context, step_index=step, num_inference_steps=args.cache_steps):
                        model(**batch, return_dict=False)
            gs.sync(device)
            times.append((time.perf_counter() - started) / args.cache_steps)
    return times[-1]


def _cfg2(model, batch, args, device, *, shape, backend: str) -> float:
    from gpu_cfg import RANKS, cfg2_seconds

    available = torch.cuda.device_count() if device.type == "cuda" else RANKS  # the dry run: gloo processes
    if available < RANKS:
        raise Refused(f"cfg_degree 2 needs {RANKS} GPUs (one per pass); this host has {available}")
    # The two ranks build their own model each; `model` (the row's fresh one) stays unused.
    return cfg2_seconds(shape, device, batch["hidden_states"].dtype, args.iters, backend)


MEASURE: dict[str, Callable[..., float]] = {
    "baseline": _baseline,
    "guidance1": _guidance1,
    "compile": _compile,
    "fp8": _fp8,
    "taylorseer": _taylorseer,
}
GPUS = {"cfg2": 2}  # MFU is per GPU: the cfg2 step runs on two
