"""Which kind of checkpoint directory is this? Torch-free, so the CLI can answer before heavy imports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

Layout = Literal["diffusers", "original", "unknown"]

# Files of the original Wan2.2 release (github.com/Wan-Video/Wan2.2, Wan-AI/Wan2.2-* repositories).
ORIGINAL_MARKERS = (
    "high_noise_model",
    "low_noise_model",
    "Wan2.1_VAE.pth",
    "Wan2.2_VAE.pth",
    "models_t5_umt5-xxl-enc-bf16.pth",
)


class LayoutError(ValueError):
    """The checkpoint directory is missing, incomplete or not a Wan2.2 checkpoint."""


class OriginalLayoutError(LayoutError):
    """A Wan2.2 checkpoint in the original release layout, which must be converted first."""

    def __init__(self, ckpt_dir: str | Path):
        self.ckpt_dir = str(ckpt_dir)
        super().__init__(
            f"{ckpt_dir} holds a Wan2.2 checkpoint in the original release layout (high_noise_model/, "
            "low_noise_model/, Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth); this service loads the "
            f"diffusers layout. Convert it once with `wan22 models convert {ckpt_dir} DST "
            "--components-from DIFFUSERS_CKPT` (diffusers converts the transformers and the Wan2.1 VAE; it has "
            "no converter for Wan's UMT5 text encoder or the Wan2.2 VAE, which are copied from a diffusers-layout "
            "checkpoint), or download the Wan-AI/Wan2.2-*-Diffusers repository. See docs/models.md."
        )


def detect_layout(directory: str | Path) -> Layout:
    path = Path(directory)
    if (path / "model_index.json").is_file() and (path / "transformer").is_dir():
        return "diffusers"
    if any((path / marker).exists() for marker in ORIGINAL_MARKERS):
        return "original"
    return "unknown"


def require_diffusers_layout(directory: str | Path) -> Path:
    """The directory as a Path if it is a diffusers-layout checkpoint, else a clear LayoutError."""
    path = Path(directory)
    if not path.is_dir():
        raise LayoutError(f"checkpoint directory {directory} does not exist")
    layout = detect_layout(path)
    if layout == "original":
        raise OriginalLayoutError(path)
    if layout == "unknown":
        raise LayoutError(
            f"{directory} is not a Wan2.2 checkpoint: expected model_index.json and transformer/ (diffusers "
            "layout); create a tiny one with `wan22 models make-tiny DIR --task T`"
        )
    return path


def write_model_index(dst: Path, kind: str, boundary_ratio: float | None, *, tokenizer_class: str) -> None:
    """model_index.json as in the Wan-AI/Wan2.2-*-Diffusers repositories (Wan2.2 i2v has no image encoder)."""
    index: dict[str, object] = {
        "_class_name": "WanImageToVideoPipeline" if kind == "i2v" else "WanPipeline",
        "_diffusers_version": "0.35.0",
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", tokenizer_class],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "transformer_2": ["diffusers", "WanTransformer3DModel"] if boundary_ratio is not None else [None, None],
        "vae": ["diffusers", "AutoencoderKLWan"],
        "boundary_ratio": boundary_ratio,
        "expand_timesteps": kind == "ti2v",
    }
    if kind == "i2v":
        index |= {"image_encoder": [None, None], "image_processor": [None, None]}
    (dst / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
