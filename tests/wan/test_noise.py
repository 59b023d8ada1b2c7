"""Where the initial noise is drawn (`noise = "cpu" | "device"`): threaded from the models TOML
through a rank to the model, and from `wan22 generate --noise`; `cpu` noise gives the same frames
whatever the setting's device and the world size. On a CPU host both settings draw on the CPU, so
the frames must be identical; on a GPU `device` is the release's draw (scripts/gpu-check.sh)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch

from services.generator.rank import RankWorker
from services.models_config import load_models
from services.settings import SettingsError
from tests.wan.support import cli_args, run_cli, tiny_input
from wan.cli_generate import _job_from_args, load_model
from wan.job import ParallelContext

TASK = "t2v-A14B"


def test_cpu_and_device_noise_draw_the_same_frames_on_a_cpu(tiny_models: dict) -> None:
    model = tiny_models[TASK]
    try:
        model.noise = "cpu"
        assert model.noise_generator(7).device == torch.device("cpu")
        cpu = model.generate(tiny_input(TASK))
        model.noise = "device"
        assert model.noise_generator(7).device == model.device
        np.testing.assert_array_equal(model.generate(tiny_input(TASK)), cpu)
        with pytest.raises(ValueError, match="noise must be one of"):
            model.noise = "gpu"
    finally:
        model.noise = "cpu"


def _models_toml(tmp_path: Path, ckpt: Path, noise: str) -> str:
    path = tmp_path / "models.toml"
    path.write_text(f'[tasks.t2v-A14B]\nckpt_dir = "{ckpt}"\nsizes = ["32*32"]\nframe_num = 5\nnoise = "{noise}"\n')
    return str(path)


def test_the_models_toml_noise_reaches_the_model_on_a_rank(tiny_root: Path, tmp_path: Path) -> None:
    served = load_models(_models_toml(tmp_path, tiny_root / TASK, "device")).get(TASK)
    assert served is not None and served.noise == "device"
    assert load_models(_models_toml(tmp_path, tiny_root / TASK, "cpu")).tasks[TASK].noise == "cpu"
    worker = RankWorker(1, 1, "", "wan22", 0)  # not rank 0: needs no Redis
    worker.load(msgspec.msgpack.encode(served))
    assert worker.model.noise == "device"
    assert load_models("").tasks[TASK].noise == "cpu"  # the default stays reproducible
    with pytest.raises(SettingsError, match=r"\[tasks.t2v-A14B\].*noise"):
        load_models(_models_toml(tmp_path, tiny_root / TASK, "gpu"))


def test_generate_noise_reaches_the_model_and_cpu_frames_match_every_setting_and_world_size(
    tiny_root: Path, tmp_path: Path
) -> None:
    common = ["generate", "--task", TASK, "--ckpt", str(tiny_root / TASK), "--prompt", "rain"]
    common += ["--size", "32*32", "--frames", "5", "--steps", "2", "--seed", "3"]
    job = _job_from_args(cli_args(*common, "--noise", "device", "--out", str(tmp_path / "x.npy")))
    assert job.noise == "device" and load_model(job, ParallelContext()).noise == "device"
    assert _job_from_args(cli_args(*common, "--out", str(tmp_path / "x.npy"))).noise == "cpu"

    runs = {"cpu-1": ["--noise", "cpu"], "device-1": ["--noise", "device"], "device-2": ["--noise", "device"]}
    for name, extra in runs.items():
        world = ["--world-size", name.rsplit("-", 1)[1]]
        assert run_cli(*common, *extra, *world, "--out", str(tmp_path / f"{name}.npy")) == 0
    frames = {name: np.load(tmp_path / f"{name}.npy") for name in runs}
    np.testing.assert_array_equal(frames["device-1"], frames["cpu-1"])
    # Two ranks over gloo: the same within float rounding (docs/models.md, Sharding).
    np.testing.assert_allclose(frames["device-2"], frames["cpu-1"], atol=1e-5)
