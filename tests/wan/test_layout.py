"""Checkpoint layouts: the original release gets a conversion error, conversion itself, wrong-task errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from tests.wan.support import run_cli, tiny_input, tiny_preset
from wan.convert import ConversionError, convert
from wan.layout import LayoutError, OriginalLayoutError, detect_layout
from wan.presets import derive_preset

# diffusers → original Wan key names: the inverse of diffusers' convert_wan_transformer_to_diffusers.
TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"),
    ("attn2", "cross_attn"),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    ("norm2", "norm__swap"),
    ("norm3", "norm2"),
    ("norm__swap", "norm3"),
]


def original_expert(diffusers_folder: Path, out: Path) -> None:
    """A tiny expert in the original release's format (config.json of WanModel, original key names)."""
    out.mkdir(parents=True)
    state = {}
    for key, tensor in load_file(diffusers_folder / "diffusion_pytorch_model.safetensors").items():
        for new, old in TO_ORIGINAL:
            key = key.replace(new, old)
        key = {"scale_shift_table": "head.modulation", "proj_out.weight": "head.head.weight"}.get(key, key)
        key = key.replace("proj_out.bias", "head.head.bias").replace(".scale_shift_table", ".modulation")
        state[key] = tensor
    save_file(state, out / "diffusion_pytorch_model-00001-of-00001.safetensors")
    cfg = json.loads((diffusers_folder / "config.json").read_text())
    original_cfg = {
        "_class_name": "WanModel",
        "model_type": "t2v",
        "dim": cfg["num_attention_heads"] * cfg["attention_head_dim"],
        "num_heads": cfg["num_attention_heads"],
        "in_dim": cfg["in_channels"],
        "out_dim": cfg["out_channels"],
        "ffn_dim": cfg["ffn_dim"],
        "freq_dim": cfg["freq_dim"],
        "text_dim": cfg["text_dim"],
        "num_layers": cfg["num_layers"],
        "eps": 1e-6,
    }
    (out / "config.json").write_text(json.dumps(original_cfg))


@pytest.fixture(scope="module")
def original_dir(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("original")
    original_expert(tiny_root / "t2v-A14B" / "transformer", src / "high_noise_model")
    original_expert(tiny_root / "t2v-A14B" / "transformer_2", src / "low_noise_model")
    shutil.copytree(tiny_root / "t2v-A14B" / "tokenizer", src / "google" / "umt5-xxl")
    (src / "models_t5_umt5-xxl-enc-bf16.pth").write_bytes(b"")  # Wan's own T5 format: not convertible
    return src


def test_detects_layouts(tiny_root: Path, original_dir: Path, tmp_path: Path) -> None:
    assert detect_layout(tiny_root / "t2v-A14B") == "diffusers"
    assert detect_layout(original_dir) == "original"
    assert detect_layout(tmp_path) == "unknown"


def test_loading_original_layout_says_how_to_convert(original_dir: Path) -> None:
    from wan.model import WanModel

    with pytest.raises(OriginalLayoutError, match=r"wan22 models convert .* DST"):
        WanModel.load(original_dir, tiny_preset("t2v-A14B"))


def test_cli_prints_the_conversion_error_not_a_traceback(original_dir: Path, tmp_path: Path, capsys) -> None:
    code = run_cli("generate", "--task", "t2v-A14B", "--ckpt", str(original_dir), "--prompt", "x", "--out", "o.mp4")
    err = capsys.readouterr().err
    assert code == 2
    assert "original release layout" in err and "wan22 models convert" in err
    assert "Traceback" not in err


def test_not_a_checkpoint_and_wrong_task_are_clear_errors(tiny_root: Path, tmp_path: Path) -> None:
    from wan.model import WanModel

    with pytest.raises(LayoutError, match=r"not a Wan2\.2 checkpoint"):
        WanModel.load(tmp_path, tiny_preset("t2v-A14B"))
    with pytest.raises(LayoutError, match="is a t2v model but task tiny-i2v-A14B is i2v"):
        WanModel.load(tiny_root / "t2v-A14B", tiny_preset("i2v-A14B"))
    two_expert_ti2v = derive_preset(tiny_preset("ti2v-5B"), "moe-ti2v", {"boundary_ratio": 0.9})
    with pytest.raises(LayoutError, match=r"one transformer but task moe-ti2v has boundary_ratio=0\.9"):
        WanModel.load(tiny_root / "ti2v-5B", two_expert_ti2v)


def test_convert_needs_the_parts_diffusers_cannot_convert(original_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"UMT5 text encoder .* --components-from"):
        convert(original_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_converted_checkpoint_generates_the_same_video(
    original_dir: Path, tiny_root: Path, tiny_models: dict, tmp_path: Path
) -> None:
    from wan.model import WanModel

    dst = tmp_path / "converted"
    code = run_cli("models", "convert", str(original_dir), str(dst), "--components-from", str(tiny_root / "t2v-A14B"))
    assert code == 0
    assert detect_layout(dst) == "diffusers"
    assert json.loads((dst / "model_index.json").read_text())["boundary_ratio"] == 0.875
    converted = WanModel.load(dst, tiny_preset("t2v-A14B"))
    np.testing.assert_array_equal(
        converted.generate(tiny_input("t2v-A14B")), tiny_models["t2v-A14B"].generate(tiny_input("t2v-A14B"))
    )
