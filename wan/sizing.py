"""Output size and conditioning image of an image job, as the Wan2.2 release computes them.

For a job with an image the requested size is a maximum area, not a shape: the video follows the
image's aspect ratio. i2v-A14B (`WanI2V.generate`) rounds each latent side down to a whole number
of patches and resizes the image to that size (bicubic, no crop); ti2v-5B (`WanTI2V.i2v`) picks
the better of two candidate sizes (`best_output_size`), scales the image to cover it (Lanczos) and
crops the centre. Jobs without an image keep the requested size. The size functions are torch-free.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

    from wan.job import GenerationInput


def area_fit_size(image_size: tuple[int, int], max_area: int, stride: int, patch: int) -> tuple[int, int]:
    """i2v-A14B: (width, height) of about `max_area` pixels with the image's aspect ratio, each side a
    whole number of `patch` latent cells of `stride` pixels, rounded down."""
    image_w, image_h = image_size
    tall = image_h / image_w

    def side(pixels: float) -> int:
        return int(pixels // stride // patch) * patch * stride

    return side(math.sqrt(max_area / tall)), side(math.sqrt(max_area * tall))


def best_fit_size(image_size: tuple[int, int], max_area: int, multiple: int) -> tuple[int, int]:
    """ti2v-5B: of the two sizes (multiples of `multiple`, at most `max_area` pixels) got by rounding
    the width down first or the height down first, the one whose aspect ratio is closer to the
    image's; the height-first one on a tie."""
    ratio = image_size[0] / image_size[1]
    exact_w = math.sqrt(max_area * ratio)
    exact_h = max_area / exact_w

    def down(value: float) -> int:
        return int(value // multiple * multiple)

    if down(exact_w) == 0 or down(exact_h) == 0:
        raise ValueError(f"an image of {image_size[0]}x{image_size[1]} is too narrow for {max_area} pixels")

    width_first = (down(exact_w), down(max_area / down(exact_w)))
    height_first = (down(max_area / down(exact_h)), down(exact_h))

    def distortion(size: tuple[int, int]) -> float:
        got = size[0] / size[1]
        return max(ratio / got, got / ratio)

    return width_first if distortion(width_first) < distortion(height_first) else height_first


def output_size(
    kind: str, requested: tuple[int, int], image_size: tuple[int, int] | None, stride: int, patch: int
) -> tuple[int, int]:
    """The (width, height) of the video a job produces. `requested` is the job's size; with an
    image it only gives the area."""
    if image_size is None:
        return requested
    area = requested[0] * requested[1]
    if kind == "ti2v":
        return best_fit_size(image_size, area, stride * patch)
    size = area_fit_size(image_size, area, stride, patch)
    if min(size) <= 0:
        raise ValueError(f"an image of {image_size[0]}x{image_size[1]} is too narrow for {area} pixels")
    return size


def fit_to_image(inp: GenerationInput, kind: str, stride: int, patch: int) -> GenerationInput:
    """The job with its actual output size (unchanged without an image)."""
    if inp.image is None:
        return inp
    width, height = output_size(kind, (inp.width, inp.height), inp.image.size, stride, patch)
    return replace(inp, width=width, height=height)


def condition_image(kind: str, image: Image, width: int, height: int) -> Any:
    """The first-frame tensor (1, 3, height, width) in the release's [-1, 1] scale, brought to the
    output size the release's way for the task."""
    if kind == "ti2v":
        return _to_tensor(_cover_and_crop(image.convert("RGB"), width, height))
    import torch.nn.functional as F

    # Bicubic on the float tensor, as the release does; values may overshoot [-1, 1] slightly.
    return F.interpolate(_to_tensor(image.convert("RGB")), size=(height, width), mode="bicubic")


def _cover_and_crop(image: Image, width: int, height: int) -> Image:
    """Scale so the image covers width x height (Lanczos), then cut out the centre."""
    from PIL import Image as PILImage

    scale = max(width / image.width, height / image.height)
    scaled = image.resize((round(image.width * scale), round(image.height * scale)), PILImage.LANCZOS)
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))


def _to_tensor(image: Image) -> Any:
    """uint8 RGB → float (1, 3, H, W): /255, then (x - 0.5) / 0.5 — the release's arithmetic, so
    the values are bit-identical to its `to_tensor().sub_(0.5).div_(0.5)`."""
    import numpy as np
    import torch

    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    return pixels.sub(0.5).div(0.5).unsqueeze(0)
