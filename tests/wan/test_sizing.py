"""Output sizes of image jobs against the release's formulas (WanI2V.generate for i2v-A14B,
best_output_size + centre crop for ti2v-5B), written out here on their own."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.wan.support import make_image, tiny_input
from wan.presets import PRESETS, parse_size
from wan.sizing import condition_image, output_size

IMAGES = {"landscape": (1600, 900), "portrait": (900, 1600), "square": (1000, 1000), "4:3": (1024, 768)}


def release_i2v_size(image_w: int, image_h: int, max_area: int, vae_stride: int = 8, patch: int = 2):
    aspect_ratio = image_h / image_w
    lat_h = round(np.sqrt(max_area * aspect_ratio) // vae_stride // patch * patch)
    lat_w = round(np.sqrt(max_area / aspect_ratio) // vae_stride // patch * patch)
    return lat_w * vae_stride, lat_h * vae_stride


def release_best_output_size(w: int, h: int, dw: int, dh: int, expected_area: int):
    ratio = w / h
    ow = (expected_area * ratio) ** 0.5
    oh = expected_area / ow
    ow1 = int(ow // dw * dw)
    oh1 = int(expected_area / ow1 // dh * dh)
    oh2 = int(oh // dh * dh)
    ow2 = int(expected_area / oh2 // dw * dw)
    r1, r2 = ow1 / oh1, ow2 / oh2
    if max(ratio / r1, r1 / ratio) < max(ratio / r2, r2 / ratio):
        return ow1, oh1
    return ow2, oh2


@pytest.mark.parametrize("image", sorted(IMAGES))
@pytest.mark.parametrize("size", PRESETS["i2v-A14B"].sizes)
def test_i2v_size_follows_the_image_within_the_area(image: str, size: str) -> None:
    width, height = parse_size(size)
    got = output_size("i2v", (width, height), IMAGES[image], 8, 2)
    assert got == release_i2v_size(*IMAGES[image], width * height)
    assert got[0] * got[1] <= width * height and got[0] % 16 == 0 and got[1] % 16 == 0


@pytest.mark.parametrize("image", sorted(IMAGES))
@pytest.mark.parametrize("size", PRESETS["ti2v-5B"].sizes)
def test_ti2v_size_is_the_release_best_output_size(image: str, size: str) -> None:
    width, height = parse_size(size)
    got = output_size("ti2v", (width, height), IMAGES[image], 16, 2)
    assert got == release_best_output_size(*IMAGES[image], 32, 32, width * height)


def test_sizes_keep_the_orientation_of_the_image() -> None:
    # A portrait image asked for at 832*480 becomes a portrait video, not a squashed landscape one.
    assert output_size("i2v", (832, 480), IMAGES["portrait"], 8, 2) == (464, 832)
    assert output_size("i2v", (832, 480), IMAGES["landscape"], 8, 2) == (832, 464)
    assert output_size("ti2v", (1280, 704), IMAGES["portrait"], 16, 2) == (704, 1248)
    assert output_size("t2v", (832, 480), None, 8, 2) == (832, 480)


# Tiny checkpoints: the requested size is an area; the image decides the shape.
TINY_CASES = [
    ("i2v-A14B", (48, 48), (40, 80), (32, 64)),
    ("i2v-A14B", (48, 48), (80, 40), (64, 32)),
    ("i2v-A14B", (48, 48), (60, 60), (48, 48)),
    ("ti2v-5B", (64, 64), (40, 120), (32, 96)),
    ("ti2v-5B", (64, 64), (120, 40), (96, 32)),
    ("ti2v-5B", (64, 64), (50, 50), (64, 64)),
]


@pytest.mark.parametrize(("task", "size", "image_size", "expected"), TINY_CASES)
def test_generated_video_has_the_release_size(tiny_models: dict, task: str, size, image_size, expected) -> None:
    kind = PRESETS[task].kind
    stride = PRESETS[task].vae_stride
    formula = (
        release_best_output_size(*image_size, 32, 32, size[0] * size[1])
        if kind == "ti2v"
        else release_i2v_size(*image_size, size[0] * size[1], stride)
    )
    assert formula == expected
    model = tiny_models[task]
    frames = model.generate(tiny_input(task, image=make_image(3, image_size), size=size))
    assert frames.shape[1:3] == (expected[1], expected[0])
    assert (model.last_input.width, model.last_input.height) == expected


def test_i2v_image_is_resized_bicubically_without_crop() -> None:
    # A left-to-right ramp stays a full ramp: nothing is cut off, only resampled.
    ramp = np.tile(np.linspace(0, 255, 100).astype(np.uint8)[None, :, None], (50, 1, 3))
    tensor = condition_image("i2v", Image.fromarray(ramp), 64, 32)
    assert tuple(tensor.shape) == (1, 3, 32, 64)
    row = tensor[0, 0, 16].numpy()
    assert row[0] < -0.95 and row[-1] > 0.95 and np.all(np.diff(row) > 0)


def test_ti2v_image_is_scaled_to_cover_and_centre_cropped() -> None:
    # Left third red, middle third green, right third blue; a square output keeps only the middle.
    pixels = np.zeros((30, 90, 3), dtype=np.uint8)
    pixels[:, :30, 0] = pixels[:, 30:60, 1] = pixels[:, 60:, 2] = 255
    tensor = condition_image("ti2v", Image.fromarray(pixels), 32, 32)
    assert tuple(tensor.shape) == (1, 3, 32, 32)
    mean = tensor[0].mean(dim=(1, 2)).numpy()
    assert mean[1] > 0.9 and mean[0] < -0.9 and mean[2] < -0.9
