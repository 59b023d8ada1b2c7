"""LoRA adapters chosen per job (wan.adapters), on resident tiny models: the frames of the same
adapters fused at load, the base frames exactly once a job asks for none, per-expert adapters and
scales, bad files refused without touching the base, files read once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from tests.wan.lora_support import write_diffusers_lora, write_original_lora
from tests.wan.support import tiny_input, tiny_preset
from wan.adapters import AdapterFiles
from wan.job import AdapterChoice
from wan.model import WanModel
from wan.speedups import LoraSpec, Speedups

TOL = 2e-5
TASK = "t2v-A14B"


@pytest.fixture(scope="module")
def files(tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tiny_models[TASK].components
    root = tmp_path_factory.mktemp("adapters")
    torn = root / "torn.safetensors"
    torn.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not a header")
    not_lora = root / "weights.safetensors"
    save_file({"blocks.0.attn1.to_q.weight": base.transformer.blocks[0].attn1.to_q.weight.detach().clone()}, not_lora)
    return {
        "high": write_diffusers_lora(root / "high", base.transformer, seed=11),
        "low": write_diffusers_lora(root / "low", base.transformer_2, rank=2, alpha=1, seed=12),
        "original": write_original_lora(root / "original.safetensors", base.transformer, seed=13),
        "torn": str(torn),
        "not_lora": str(not_lora),
    }


@pytest.fixture(scope="module", params=["fuse", "runtime"])
def model(request: pytest.FixtureRequest, tiny_root: Path) -> WanModel:
    """A model of its own: the shared ones must never be left with adapters."""
    return WanModel.load(tiny_root / TASK, tiny_preset(TASK), lora_switch=request.param)


def two_experts(files: dict[str, str]) -> tuple[AdapterChoice, ...]:
    return (
        AdapterChoice("high", files["high"], 0.7, "high_noise"),
        AdapterChoice("low", files["low"], 1.3, "low_noise"),
    )


def run(model: WanModel, loras: tuple[AdapterChoice, ...] = ()) -> np.ndarray:
    inp = tiny_input(TASK)
    inp.loras = loras
    return model.generate(inp)


def test_per_job_adapters_give_the_frames_of_the_same_adapters_fused_at_load(
    model: WanModel, files: dict, tiny_root: Path
) -> None:
    specs = (LoraSpec(path=files["high"], expert="high_noise", scale=0.7),
             LoraSpec(path=files["low"], expert="low_noise", scale=1.3))  # fmt: skip
    fused_at_load = WanModel.load(tiny_root / TASK, tiny_preset(TASK), speedups=Speedups(loras=specs))
    expected = fused_at_load.generate(tiny_input(TASK))
    np.testing.assert_allclose(run(model, two_experts(files)), expected, atol=TOL)


def test_a_job_without_adapters_after_one_with_gives_the_base_frames_exactly(model: WanModel, files: dict) -> None:
    base = run(model)
    with_loras = run(model, two_experts(files))
    assert np.abs(with_loras - base).max() > 1e-2  # the adapters do change the video
    assert np.array_equal(run(model), base)
    other = (AdapterChoice("original", files["original"], 0.5, "both"),)
    assert np.abs(run(model, other) - with_loras).max() > 1e-2  # a switch between two adapter sets
    assert np.array_equal(run(model), base)


def test_scale_changes_the_frames(model: WanModel, files: dict) -> None:
    half = run(model, (AdapterChoice("original", files["original"], 0.5, "both"),))
    whole = run(model, (AdapterChoice("original", files["original"], 1.0, "both"),))
    assert np.abs(half - whole).max() > 1e-3


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing", "cannot read it"), ("torn", "cannot read it"), ("not_lora", "unsupported key")],
)
def test_a_bad_adapter_fails_the_job_and_leaves_the_weights_as_they_were(
    model: WanModel, files: dict, tmp_path: Path, name: str, message: str
) -> None:
    base = run(model)
    run(model, two_experts(files))  # adapters active when the bad request comes
    path = files.get(name, str(tmp_path / "gone.safetensors"))
    with pytest.raises(ValueError, match=message):
        run(model, (AdapterChoice(name, path, 1.0, "both"),))
    assert model.adapters is not None and model.adapters.current == two_experts(files)  # nothing was touched
    assert np.array_equal(run(model), base)  # the model still serves, and goes back to the base


def test_the_same_adapters_do_not_switch_again(model: WanModel, files: dict) -> None:
    adapters = model.adapters
    assert adapters is not None
    adapters.switch(two_experts(files))
    assert adapters.switch(two_experts(files)) is False
    assert adapters.switch(()) is True


def test_adapter_files_are_read_once_and_evicted_past_the_budget(files: dict) -> None:
    cache = AdapterFiles(budget_bytes=10**9)
    first = cache.get(files["high"])
    assert cache.get(files["high"]) is first and cache.reads == 1
    small = AdapterFiles(budget_bytes=1)  # room for the newest file only
    small.get(files["high"])
    small.get(files["low"])
    small.get(files["high"])
    assert small.reads == 3


def test_single_expert_models_take_adapters_on_both(tiny_root: Path, tiny_models: dict, tmp_path: Path) -> None:
    task = "ti2v-5B"
    path = write_diffusers_lora(tmp_path / "ti2v", tiny_models[task].components.transformer, seed=5)
    model = WanModel.load(tiny_root / task, tiny_preset(task))
    inp = tiny_input(task)
    base = model.generate(inp)
    inp.loras = (AdapterChoice("style", path, 1.0, "both"),)
    assert np.abs(model.generate(inp) - base).max() > 1e-2
    inp.loras = ()
    assert np.array_equal(model.generate(inp), base)
