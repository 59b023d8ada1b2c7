"""`wan22 models make-tiny|convert` and `wan22 generate`. Importing this module is cheap: torch and
diffusers are imported inside the commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wan.presets import PRESETS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `models` and `generate` subcommands to a `wan22`-style argparse parser."""
    models = subparsers.add_parser("models", help="create or convert Wan2.2 checkpoints")
    register_models(models.add_subparsers(dest="models_command", required=True, metavar="ACTION"))
    _add_generate(subparsers)


def register_models(actions: argparse._SubParsersAction) -> None:
    tiny = actions.add_parser("make-tiny", help="write a tiny random-weight checkpoint (diffusers layout)")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--task", required=True, choices=sorted(PRESETS))
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=_run_make_tiny)

    convert = actions.add_parser("convert", help="convert an original Wan2.2 release to the diffusers layout")
    convert.add_argument("src", type=Path, help="original layout (high_noise_model/, Wan2.1_VAE.pth, ...)")
    convert.add_argument("dst", type=Path, help="new diffusers-layout directory")
    convert.add_argument(
        "--components-from",
        type=Path,
        help="a diffusers-layout Wan2.2 checkpoint to take the parts diffusers cannot convert from "
        "(text_encoder/; vae/ for ti2v-5B; tokenizer/ if SRC has no google/umt5-xxl/)",
    )
    convert.set_defaults(run=_run_convert)

    from services.cli.models_list import add_list  # torch-free: what the deployment serves

    add_list(actions)


def _add_generate(subparsers: argparse._SubParsersAction) -> None:
    gen = subparsers.add_parser("generate", help="generate one video locally (like Wan2.2's generate.py)")
    gen.add_argument("--task", required=True, choices=sorted(PRESETS))
    gen.add_argument("--ckpt", required=True, type=Path, help="checkpoint directory (diffusers layout)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative-prompt", default="", help="default: the release's (the task's) negative prompt")
    gen.add_argument("--image", type=Path, help="conditioning image (i2v; optional for ti2v)")
    gen.add_argument("--size", help="WIDTH*HEIGHT (default: the task's first size); with --image, the area to fill")
    gen.add_argument("--frames", type=int, help="frame count, 4k+1")
    gen.add_argument("--steps", type=int, help="denoising steps")
    gen.add_argument("--shift", type=float, help="flow shift")
    gen.add_argument("--guide-scale", type=float, nargs="+", help="one value, or LOW HIGH for the two experts")
    gen.add_argument("--seed", type=int, default=-1, help="negative: random")
    gen.add_argument("--world-size", type=int, default=1, help="local processes (sequence parallel)")
    gen.add_argument(
        "--cfg-degree",
        type=int,
        choices=[1, 2],
        default=1,
        help="2: half the processes run the conditional pass, half the unconditional one (needs guidance != 1)",
    )
    gen.add_argument("--ulysses-degree", type=int, help="default: the world size / the CFG degree")
    gen.add_argument("--fsdp", action="store_true", help="shard transformer (and text encoder) parameters")
    gen.add_argument("--t5-cpu", action="store_true", help="keep the text encoder on the CPU")
    gen.add_argument(
        "--offload",
        choices=["none", "experts", "model", "blocks"],
        default="none",
        help="experts: only the running expert on the GPU (A14B on one 80 GB GPU); "
        "model: also the text encoder on the CPU and nothing but the VAE on the GPU when idle; "
        "blocks: the blocks stream from pinned host memory, a block or two ahead (A14B on 24-48 GB)",
    )
    gen.add_argument(
        "--offload-prefetch", type=int, default=1, help="with --offload blocks: blocks copied in ahead (1-4)"
    )
    gen.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    gen.add_argument(
        "--noise",
        choices=["cpu", "device"],
        default="cpu",
        help="where the initial noise is drawn: cpu (the same video for a seed on every GPU kind and world size) "
        "or device (on the GPU, as the release's generate.py: a seed gives the release's video)",
    )
    gen.add_argument("--attention-backend", help="diffusers attention backend, e.g. flash, _native_cudnn")
    gen.add_argument("--vae-tiling", action="store_true", help="decode in tiles (large sizes)")
    gen.add_argument("--poster", type=Path, help="also write the first frame here (.jpg or .png)")
    gen.add_argument("--out", required=True, type=Path, help=".mp4 (H.264) or .npy (raw float frames)")
    gen.set_defaults(run=_run_generate)


def _fail(command: str, exc: Exception) -> int:
    print(f"wan22 {command}: {exc}", file=sys.stderr)
    return 2


def _run_make_tiny(args: argparse.Namespace) -> int:
    from wan.tiny import make_tiny

    print(make_tiny(args.dir, args.task, seed=args.seed))
    return 0


def _run_convert(args: argparse.Namespace) -> int:
    from wan.convert import ConversionError, convert

    try:
        convert(args.src, args.dst, components_from=args.components_from, log=print)
    except ConversionError as exc:
        return _fail("models convert", exc)
    return 0


def _run_generate(args: argparse.Namespace) -> int:
    from wan.cli_generate import run

    try:
        return run(args)
    except ValueError as exc:  # bad input, wrong or original-layout checkpoint: one line, no traceback
        return _fail("generate", exc)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m wan.cli ...`) with the same subcommands."""
    parser = argparse.ArgumentParser(prog="wan22")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
