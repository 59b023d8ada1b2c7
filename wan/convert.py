"""Original Wan2.2 release layout → diffusers layout (`wan22 models convert SRC DST`).

diffusers' single-file converters handle the transformer experts (`convert_wan_transformer_to_diffusers`)
and the Wan2.1 VAE (`convert_wan_vae_to_diffusers`). They do not handle Wan's own UMT5 checkpoint
(`models_t5_umt5-xxl-enc-bf16.pth`) nor the Wan2.2 VAE of ti2v-5B (`Wan2.2_VAE.pth`): those parts
are copied from a diffusers-layout checkpoint given with `components_from`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wan.layout import LayoutError, detect_layout, write_model_index
from wan.presets import PRESETS


class ConversionError(LayoutError):
    """The source cannot be converted as asked; the message says what to supply."""


def convert(
    src: str | Path, dst: str | Path, *, components_from: str | Path | None = None, log: Callable[[str], Any] = print
) -> Path:
    src, dst = Path(src), Path(dst)
    layout = detect_layout(src)
    if layout != "original":
        what = "already in the diffusers layout" if layout == "diffusers" else "not a Wan2.2 checkpoint"
        raise ConversionError(f"{src} is {what}; convert reads the original release layout")
    if dst.exists() and any(dst.iterdir()):
        raise ConversionError(f"{dst} already exists and is not empty")
    experts = _experts(src)
    kind = json.loads((experts[0][0] / "config.json").read_text()).get("model_type", "t2v")
    copies = _copies(src, components_from, kind)
    dst.mkdir(parents=True, exist_ok=True)
    for folder, name in experts:
        log(f"converting {folder.name if folder != src else 'transformer'} -> {name}/")
        convert_transformer(folder, dst / name)
    if (src / "Wan2.1_VAE.pth").is_file():
        log("converting Wan2.1_VAE.pth -> vae/")
        convert_wan21_vae(src / "Wan2.1_VAE.pth", dst / "vae")
    for part, origin in copies.items():
        log(f"copying {part}/ from {origin}")
        shutil.copytree(origin, dst / part)
    _write_scheduler(dst / "scheduler")
    boundary = next(p.boundary_ratio for p in PRESETS.values() if p.kind == kind) if len(experts) == 2 else None
    write_model_index(dst, kind, boundary, tokenizer_class="T5TokenizerFast")
    return dst


def _experts(src: Path) -> list[tuple[Path, str]]:
    if (src / "high_noise_model").is_dir():
        if not (src / "low_noise_model").is_dir():
            raise ConversionError(f"{src} has high_noise_model/ but no low_noise_model/")
        return [(src / "high_noise_model", "transformer"), (src / "low_noise_model", "transformer_2")]
    if (src / "config.json").is_file() and list(src.glob("diffusion_pytorch_model*.safetensors")):
        return [(src, "transformer")]  # ti2v-5B keeps its single transformer at the top level
    raise ConversionError(f"{src}: no transformer weights (high_noise_model/, or diffusion_pytorch_model*.safetensors)")


def _copies(src: Path, components_from: str | Path | None, kind: str) -> dict[str, Path]:
    """Parts diffusers has no converter for, and where to copy them from. Checked before any heavy work."""
    wanted = ["text_encoder"]
    if not (src / "Wan2.1_VAE.pth").is_file():
        wanted.append("vae")  # Wan2.2_VAE.pth (ti2v-5B)
    tokenizer_src = src / "google" / "umt5-xxl"
    if not tokenizer_src.is_dir():
        wanted.append("tokenizer")
    if components_from is None:
        raise ConversionError(
            f"diffusers has no converter for {', '.join(_ORIGINAL_NAMES[p] for p in wanted)} of this {kind} "
            "checkpoint; pass --components-from DIR, a diffusers-layout Wan2.2 checkpoint of the same model "
            f"(e.g. Wan-AI/Wan2.2-*-Diffusers), to copy {', '.join(p + '/' for p in wanted)} from"
        )
    origin = Path(components_from)
    missing = [p for p in wanted if not (origin / p).is_dir()]
    if missing:
        raise ConversionError(f"--components-from {origin} lacks {', '.join(p + '/' for p in missing)}")
    copies = {part: origin / part for part in wanted}
    if tokenizer_src.is_dir():
        copies["tokenizer"] = tokenizer_src
    return copies


_ORIGINAL_NAMES = {
    "text_encoder": "the UMT5 text encoder (models_t5_umt5-xxl-enc-bf16.pth)",
    "vae": "the Wan2.2 VAE (Wan2.2_VAE.pth)",
    "tokenizer": "a missing tokenizer (google/umt5-xxl/)",
}


def transformer_config(original: dict[str, Any]) -> dict[str, Any]:
    """Wan's WanModel config.json → WanTransformer3DModel config."""
    dim, heads = original["dim"], original["num_heads"]
    return {
        "patch_size": list(original.get("patch_size", (1, 2, 2))),
        "num_attention_heads": heads,
        "attention_head_dim": dim // heads,
        "in_channels": original["in_dim"],
        "out_channels": original["out_dim"],
        "text_dim": original.get("text_dim", 4096),
        "freq_dim": original.get("freq_dim", 256),
        "ffn_dim": original["ffn_dim"],
        "num_layers": original["num_layers"],
        "cross_attn_norm": original.get("cross_attn_norm", True),
        "qk_norm": "rms_norm_across_heads",
        "eps": original.get("eps", 1e-6),
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": 1024,
    }


def convert_transformer(folder: Path, out: Path, *, max_shard_size: str = "10GB") -> None:
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for path in sorted(folder.glob("diffusion_pytorch_model*.safetensors")):
        state.update(load_file(path))
    config = transformer_config(json.loads((folder / "config.json").read_text()))
    _save_strict(WanTransformer3DModel, config, convert_wan_transformer_to_diffusers(state), out, max_shard_size)


def convert_wan21_vae(path: Path, out: Path) -> None:
    import torch
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    # The Wan2.1 VAE is diffusers' default AutoencoderKLWan configuration.
    _save_strict(AutoencoderKLWan, {}, convert_wan_vae_to_diffusers(state), out, "10GB")


def _save_strict(cls: type, config: dict[str, Any], state: dict[str, Any], out: Path, max_shard_size: str) -> None:
    """Build `cls` on the meta device, insist every converted key fits it exactly, save the diffusers way."""
    import torch

    with torch.device("meta"):
        model = cls.from_config(config)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise ConversionError(
            f"{cls.__name__}: converted weights do not match the model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]})"
        )
    model.load_state_dict(state, strict=True, assign=True)
    model.save_pretrained(out, safe_serialization=True, max_shard_size=max_shard_size)


def _write_scheduler(out: Path) -> None:
    from wan.loader import released_scheduler

    released_scheduler().save_pretrained(out)
