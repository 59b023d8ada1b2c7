"""Expert offloading (the release's --offload_model / --t5_cpu) on tiny checkpoints.

What a CPU can show: which expert the offloader puts on the device before every forward, which
one it sends to host memory and when, and that the video is bit-identical with and without it. On
a CPU the device and host memory are the same memory, so `.to()` moves nothing here; that the
tensors really leave the GPU (and the peak memory) is for a GPU run to show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.wan.support import run_cli, tiny_input, tiny_preset
from wan.loader import scheduler_with_shift
from wan.model import WanModel
from wan.offload import DEVICE, HOST
from wan.offloadmode import check_offload


@pytest.fixture(scope="module")
def offloaded(tiny_root: Path) -> dict[str, WanModel]:
    return {
        mode: WanModel.load(tiny_root / "t2v-A14B", tiny_preset("t2v-A14B"), offload=mode)
        for mode in ("experts", "model")
    }


def expected_experts(model: WanModel) -> list[str]:
    inp = tiny_input("t2v-A14B")
    scheduler = scheduler_with_shift(model.components.scheduler, inp.sample_shift)
    scheduler.set_timesteps(inp.sample_steps)
    return [model.expert_at(float(t)) for t in scheduler.timesteps]


@pytest.mark.parametrize("mode", ["experts", "model"])
def test_frames_are_identical_with_and_without_offload(tiny_models: dict, offloaded: dict, mode: str) -> None:
    inp = tiny_input("t2v-A14B")
    assert np.array_equal(offloaded[mode].generate(inp), tiny_models["t2v-A14B"].generate(inp))


@pytest.mark.parametrize("mode", ["experts", "model"])
def test_only_the_running_expert_is_on_the_device(offloaded: dict, mode: str) -> None:
    model = offloaded[mode]
    offloader = model.offloader
    experts = expected_experts(model)
    assert "high_noise" in experts and "low_noise" in experts
    model.generate(tiny_input("t2v-A14B"))
    trace = offloader.last
    # Two forwards (cond, uncond) per step, each on the expert of its step, which alone is on the device.
    assert [name for name, _ in trace.forwards] == [e for e in experts for _ in range(2)]
    for name, where in trace.forwards:
        assert where[name] == DEVICE
        assert all(place == HOST for other, place in where.items() if other != name)


def test_experts_mode_swaps_once_at_the_boundary_and_keeps_the_last_expert(offloaded: dict) -> None:
    model = offloaded["experts"]
    model.generate(tiny_input("t2v-A14B"))  # whatever the previous job left
    model.generate(tiny_input("t2v-A14B"))
    # The low-noise expert stayed from the job before: it leaves before the high-noise one comes
    # in; at the boundary the high-noise expert leaves before the low-noise one comes in.
    assert model.offloader.last.moves == [
        ("low_noise", HOST),
        ("high_noise", DEVICE),
        ("high_noise", HOST),
        ("low_noise", DEVICE),
    ]
    assert model.offloader.where == {"high_noise": HOST, "low_noise": DEVICE}


def test_model_mode_leaves_nothing_on_the_device_between_jobs(offloaded: dict) -> None:
    model = offloaded["model"]
    model.generate(tiny_input("t2v-A14B"))
    assert model.offloader.last.moves == [
        ("high_noise", DEVICE),
        ("high_noise", HOST),
        ("low_noise", DEVICE),
        ("low_noise", HOST),
    ]
    assert model.offloader.where == {"high_noise": HOST, "low_noise": HOST}
    assert model.offloader.text_encoder_on_cpu
    assert model.components.text_encoder.device.type == "cpu"


def test_model_mode_parks_the_experts_after_a_cancel(offloaded: dict) -> None:
    from wan.model import Cancelled

    model = offloaded["model"]
    with pytest.raises(Cancelled):
        model.generate(tiny_input("t2v-A14B"), should_cancel=iter([False, True]).__next__)
    assert model.offloader.where == {"high_noise": HOST, "low_noise": HOST}


def test_single_expert_model_keeps_its_expert_once_moved(tiny_root: Path, tiny_models: dict) -> None:
    model = WanModel.load(tiny_root / "ti2v-5B", tiny_preset("ti2v-5B"), offload="experts")
    inp = tiny_input("ti2v-5B")
    assert np.array_equal(model.generate(inp), tiny_models["ti2v-5B"].generate(inp))
    assert model.offloader.last.moves == [("single", DEVICE)]
    model.generate(inp)
    assert model.offloader.last.moves == [] and model.offloader.where == {"single": DEVICE}


def test_offload_settings_are_checked() -> None:
    assert check_offload("experts", fsdp=False) == "experts"
    with pytest.raises(ValueError, match="one of"):
        check_offload("gpu", fsdp=False)
    with pytest.raises(ValueError, match="FSDP"):
        check_offload("model", fsdp=True)


def test_cli_offload_gives_the_same_frames(tiny_root: Path, tmp_path: Path) -> None:
    common = ["generate", "--task", "t2v-A14B", "--ckpt", str(tiny_root / "t2v-A14B"), "--prompt", "a cat"]
    common += ["--size", "32*32", "--frames", "5", "--steps", "4", "--seed", "3", "--device", "cpu"]
    assert run_cli(*common, "--out", str(tmp_path / "plain.npy")) == 0
    for mode in (["experts"], ["blocks", "--offload-prefetch", "2"]):
        out = tmp_path / f"{mode[0]}.npy"
        assert run_cli(*common, "--offload", *mode, "--out", str(out)) == 0
        assert np.array_equal(np.load(tmp_path / "plain.npy"), np.load(out)), mode
