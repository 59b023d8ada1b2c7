"""Small pieces without a model: video encoding, guidance order, sharding checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from wan.job import ParallelContext
from wan.parallel import Degrees, check_tokens, degrees
from wan.presets import PRESETS, expert_guidance
from wan.video import X264_AVX512, decode_mp4, encode_mp4, poster_image, probe_mp4, to_uint8, x264_params


def test_mp4_is_h264_yuv420p_at_fps_and_odd_sizes_are_padded() -> None:
    import av

    frames = np.random.default_rng(0).random((9, 33, 47, 3), dtype=np.float32)
    data = encode_mp4(frames, fps=24)
    assert probe_mp4(data) == (9, 48, 34)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 24
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: playable while downloading


def test_mp4_keeps_the_picture() -> None:
    frames = np.zeros((5, 32, 32, 3), dtype=np.float32)
    frames[:, :, :16] = 1.0  # left half white
    decoded = decode_mp4(encode_mp4(frames, fps=16))
    assert decoded.shape == (5, 32, 32, 3)
    assert decoded[:, :, :12].mean() > 240 and decoded[:, :, 20:].mean() < 15


def test_the_same_frames_give_the_same_mp4_encode_after_encode() -> None:
    """On AVX-512 CPUs x264's AVX-512 kernels gave other bytes for the same frames in about every
    other encode; a video job's frames must make the same file each time (wan.video.x264_params)."""
    rng = np.random.default_rng(0)
    rows, columns, channels = np.linspace(0, 5, 128)[:, None, None], np.linspace(0, 6, 160)[None, :, None], np.arange(3)
    waves = np.stack([np.sin(columns * 0.7 - t / 5 + channels) * np.cos(rows + t / 3) for t in range(17)])
    frames = np.clip((waves + 1) / 2 + rng.normal(0, 0.03, waves.shape), 0, 1)
    first = encode_mp4(frames, fps=16)
    assert all(encode_mp4(frames, fps=16) == first for _ in range(6))


def test_x264_leaves_avx512_out_only_where_the_cpu_has_it(tmp_path) -> None:
    avx512, avx2, other = tmp_path / "avx512", tmp_path / "avx2", tmp_path / "arm"
    avx512.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {' '.join(X264_AVX512)}\n")
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")  # not all x264 needs
    other.write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert x264_params(str(avx512)) == {"x264-params": "asm=AVX2"}
    assert x264_params(str(avx2)) == {} and x264_params(str(other)) == {}
    assert x264_params(str(tmp_path / "missing")) == {}


@pytest.mark.parametrize(("fmt", "magic"), [("jpeg", b"\xff\xd8\xff"), ("png", b"\x89PNG")])
def test_poster_is_the_first_frame(fmt: str, magic: bytes) -> None:
    frames = np.zeros((3, 16, 24, 3), dtype=np.float32)
    frames[0] = 1.0
    data = poster_image(frames, fmt)
    assert data.startswith(magic)
    image = Image.open(io.BytesIO(data))
    assert image.size == (24, 16)
    assert np.asarray(image).mean() > 250


def test_to_uint8_rounds_and_clips() -> None:
    frames = np.array([[[[0.0, 0.5, 1.2]]]], dtype=np.float32)
    assert to_uint8(frames).tolist() == [[[[0, 128, 255]]]]
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        to_uint8(np.zeros((4, 4, 3)))


def test_guidance_goes_high_noise_first_for_diffusers() -> None:
    t2v = PRESETS["t2v-A14B"]  # Wan order (low-noise 3.0, high-noise 4.0)
    assert expert_guidance(t2v) == (4.0, 3.0)
    assert expert_guidance(t2v, [2.0, 6.0]) == (6.0, 2.0)
    assert expert_guidance(t2v, 5.0) == (5.0, 5.0)
    assert expert_guidance(PRESETS["ti2v-5B"]) == (5.0, None)
    with pytest.raises(ValueError, match="pair"):
        expert_guidance(t2v, [1.0, 2.0, 3.0])


def test_sequence_parallel_degrees_are_checked() -> None:
    assert degrees(ParallelContext(world_size=4), heads=40, attention_backend=None) == Degrees(ulysses=4, ring=1)
    assert degrees(ParallelContext(world_size=4, ulysses_degree=2), 40, "flash") == Degrees(ulysses=2, ring=2)
    with pytest.raises(ValueError, match="must divide the transformer's 40 attention heads"):
        degrees(ParallelContext(world_size=3), heads=40, attention_backend=None)
    with pytest.raises(ValueError, match="log-sum-exp"):
        degrees(ParallelContext(world_size=4, ulysses_degree=2), heads=40, attention_backend=None)
    with pytest.raises(ValueError, match="must divide the world size"):
        degrees(ParallelContext(world_size=4, ulysses_degree=3), heads=6, attention_backend=None)
    check_tokens(32760, Degrees(ulysses=8, ring=1))  # 480P, 81 frames over 8 ranks
    check_tokens(32130, Degrees(ulysses=4, ring=1))  # Ulysses alone takes any count (wan.uneven)
    with pytest.raises(ValueError, match="does not divide by the 16"):
        check_tokens(32760 + 1, Degrees(ulysses=8, ring=2))
