"""`wan22 models make-tiny` and `wan22 generate` through an argparse harness, in this process."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.wan.support import make_image, run_cli
from wan.layout import detect_layout
from wan.video import probe_mp4


def test_make_tiny_writes_the_diffusers_layout(tmp_path: Path, capsys) -> None:
    assert run_cli("models", "make-tiny", str(tmp_path / "i2v"), "--task", "i2v-A14B") == 0
    root = tmp_path / "i2v"
    assert detect_layout(root) == "diffusers"
    index = json.loads((root / "model_index.json").read_text())
    assert index["_class_name"] == "WanImageToVideoPipeline" and index["boundary_ratio"] == 0.9
    assert index["image_encoder"] == [None, None]  # Wan2.2 i2v conditions on VAE latents only
    for part in ("tokenizer", "text_encoder", "transformer", "transformer_2", "vae", "scheduler"):
        assert (root / part).is_dir(), part
    assert json.loads((root / "transformer" / "config.json").read_text())["in_channels"] == 36


def test_generate_writes_mp4_and_poster(tiny_root: Path, tmp_path: Path, capsys) -> None:
    out, poster = tmp_path / "video.mp4", tmp_path / "poster.png"
    image = tmp_path / "first.png"
    make_image(3, (50, 30)).save(image)
    code = run_cli(
        "generate", "--task", "ti2v-5B", "--ckpt", str(tiny_root / "ti2v-5B"), "--prompt", "a dog runs",
        "--image", str(image), "--size", "64*32", "--frames", "9", "--steps", "2", "--seed", "4",
        "--out", str(out), "--poster", str(poster),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0
    assert "64*32 is not one of ti2v-5B's sizes" in err  # accepted, with a warning
    assert "2/2" in err  # the progress bar reached the last step
    assert probe_mp4(out.read_bytes()) == (9, 64, 32)
    assert poster.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generate_npy_is_deterministic(tiny_root: Path, tmp_path: Path) -> None:
    common = ["generate", "--task", "t2v-A14B", "--ckpt", str(tiny_root / "t2v-A14B"), "--prompt", "rain"]
    common += ["--size", "32*48", "--frames", "5", "--steps", "2", "--seed", "9"]
    assert run_cli(*common, "--out", str(tmp_path / "a.npy")) == 0
    assert run_cli(*common, "--out", str(tmp_path / "b.npy")) == 0
    first = np.load(tmp_path / "a.npy")
    assert first.shape == (5, 48, 32, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), first)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "40*32"], "multiples of 16"),
        (["--frames", "8"], r"4k\+1"),
        (["--size", "32*32", "--frames", "5", "--world-size", "3"], "must divide the 2 heads"),
        (["--image", "x.png"], "does not take --image"),
    ],
)
def test_generate_refuses_bad_arguments_in_one_line(tiny_root: Path, capsys, extra: list[str], message: str) -> None:
    ckpt = str(tiny_root / "t2v-A14B")
    code = run_cli("generate", "--task", "t2v-A14B", "--ckpt", ckpt, "--prompt", "x", "--out", "o.mp4", *extra)
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(message, err)
    assert "Traceback" not in err
