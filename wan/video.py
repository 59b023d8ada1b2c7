"""Frames to H.264 mp4 and a poster image, with PyAV. No torch."""

from __future__ import annotations

import functools
import io
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) float in [0, 1] (or uint8) → uint8, rounded like diffusers' numpy_to_pil."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (F, H, W, 3), got shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _even(frames: np.ndarray) -> np.ndarray:
    # yuv420p subsamples chroma 2x2: odd sizes are padded by repeating the last row / column.
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


# x264 uses AVX-512 when all five of these are present. Its AVX-512 kernels (libx264 core 165, as
# PyAV bundles it) made the bitstream of the same frames differ from one encode to the next, frames
# apart by up to 38 levels after decoding; with its AVX2 kernels the stream depends on the frames only.
X264_AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


@functools.cache
def x264_params(cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """`asm=AVX2` on CPUs where x264 would pick AVX-512 (every such CPU has AVX2), else nothing."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return {}
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {"x264-params": "asm=AVX2"} if all(flag in flags for flag in X264_AVX512) else {}


def encode_mp4(frames: np.ndarray, fps: int, *, crf: int = 18, preset: str = "medium") -> bytes:
    """H.264 (libx264), yuv420p, `fps` frames per second, faststart so players can stream it. The
    same frames give the same bytes on a given machine (see `x264_params`)."""
    pixels = _even(to_uint8(frames))
    # faststart rewrites the file to put the index first, which needs a real file rather than a buffer.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "video.mp4"
        _write(path, pixels, fps, crf, preset)
        return path.read_bytes()


def _write(path: Path, pixels: np.ndarray, fps: int, crf: int, preset: str) -> None:
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = pixels.shape[2], pixels.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset, **x264_params()}
        for pixel_frame in pixels:
            frame = av.VideoFrame.from_ndarray(pixel_frame, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def poster_image(frames: np.ndarray, fmt: str = "jpeg", *, quality: int = 90) -> bytes:
    """The first frame as JPEG or PNG, for dashboards and previews."""
    fmt = fmt.lower()
    if fmt not in ("jpeg", "jpg", "png"):
        raise ValueError(f"poster format must be jpeg or png, got {fmt!r}")
    image = Image.fromarray(to_uint8(frames)[0])
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def spritesheet_image(frames: np.ndarray, *, tiles: int = 16, tile_width: int = 160, quality: int = 80) -> bytes:
    """Up to `tiles` frames spread evenly over the video, downscaled to `tile_width` and laid out
    in a near-square grid, as one JPEG: a scrubbing strip for players and a glance for people."""
    pixels = to_uint8(frames)
    count = min(tiles, len(pixels))
    picks = np.linspace(0, len(pixels) - 1, count).round().astype(int)
    height, width = pixels.shape[1:3]
    tile_w = min(tile_width, width)
    tile_h = max(1, round(height * tile_w / width))
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    sheet = Image.new("RGB", (columns * tile_w, rows * tile_h))
    for slot, index in enumerate(picks):
        tile = Image.fromarray(pixels[index]).resize((tile_w, tile_h), Image.Resampling.BILINEAR)
        sheet.paste(tile, ((slot % columns) * tile_w, (slot // columns) * tile_h))
    buffer = io.BytesIO()
    sheet.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def probe_mp4(data: bytes) -> tuple[int, int, int]:
    """(frame_count, width, height) of an mp4, by decoding every frame."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, stream.codec_context.width, stream.codec_context.height


def decode_mp4(data: bytes) -> np.ndarray:
    """All frames of an mp4 as uint8 (F, H, W, 3)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])
