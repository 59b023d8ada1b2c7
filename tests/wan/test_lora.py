"""LoRA adapters fused at load give the frames of diffusers' own (unfused, PEFT) `load_lora_weights`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.wan.lora_support import write_diffusers_lora, write_original_lora
from tests.wan.support import tiny_input, tiny_preset
from wan.model import WanModel
from wan.speedups import LoraSpec, Speedups

TOL = 2e-5  # fused W + s*B@A against PEFT's x@W + s*(x@A)@B: fp32 rounding only


@pytest.fixture(scope="module")
def loras(tiny_root: Path, tiny_models: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tiny_models["t2v-A14B"].components
    root = tmp_path_factory.mktemp("loras")
    return {
        "high": write_diffusers_lora(root / "high", base.transformer, seed=1),
        "low": write_diffusers_lora(root / "low", base.transformer_2, rank=2, alpha=1, seed=2),
        "original": write_original_lora(root / "original.safetensors", base.transformer, seed=3),
    }


def test_per_expert_loras_match_diffusers_load_lora_weights(tiny_root: Path, tiny_models: dict, loras: dict) -> None:
    task = "t2v-A14B"
    specs = (LoraSpec(path=loras["high"], expert="high_noise"), LoraSpec(path=loras["low"], expert="low_noise"))
    fused = WanModel.load(tiny_root / task, tiny_preset(task), speedups=Speedups(loras=specs))
    frames = fused.generate(tiny_input(task))

    reference = WanModel.load(tiny_root / task, tiny_preset(task))
    pipe = reference._pipes["t2v"]
    pipe.load_lora_weights(loras["high"], adapter_name="high")
    pipe.load_lora_weights(loras["low"], adapter_name="low", load_into_transformer_2=True)
    expected = reference.generate(tiny_input(task))

    np.testing.assert_allclose(frames, expected, atol=TOL)
    plain = tiny_models[task].generate(tiny_input(task))
    assert np.abs(frames - plain).max() > 1e-2  # the LoRAs do change the video
    # and each went into its own expert only
    base = tiny_models[task].components
    assert not torch.equal(
        fused.components.transformer.blocks[0].attn1.to_q.weight, base.transformer.blocks[0].attn1.to_q.weight
    )
    assert torch.equal(
        fused.components.transformer.blocks[0].attn2.to_k.weight, base.transformer.blocks[0].attn2.to_k.weight
    )


def test_original_wan_lora_on_both_experts_with_scale(tiny_root: Path, loras: dict) -> None:
    task = "t2v-A14B"
    spec = LoraSpec(path=loras["original"], scale=0.5)
    frames = WanModel.load(tiny_root / task, tiny_preset(task), speedups=Speedups(loras=(spec,))).generate(
        tiny_input(task)
    )

    reference = WanModel.load(tiny_root / task, tiny_preset(task))
    pipe = reference._pipes["t2v"]
    pipe.load_lora_weights(loras["original"], adapter_name="a")
    pipe.load_lora_weights(loras["original"], adapter_name="b", load_into_transformer_2=True)
    pipe.set_adapters(["a"], [0.5])
    pipe.transformer_2.set_adapters(["b"], [0.5])
    np.testing.assert_allclose(frames, reference.generate(tiny_input(task)), atol=TOL)


def test_a_lora_for_another_model_is_refused(tiny_root: Path, tmp_path: Path) -> None:
    from wan.tiny import TransformerDims, _transformer

    wider = _transformer(16, 16, TransformerDims(head_dim=16, layers=1))
    other = write_diffusers_lora(tmp_path / "wider", wider)
    with pytest.raises(ValueError, match=r"LoRA .* is \(32, 32\), the model's \(24, 24\)"):
        WanModel.load(tiny_root / "t2v-A14B", tiny_preset("t2v-A14B"), speedups=Speedups(loras=(LoraSpec(path=other),)))
    with pytest.raises(ValueError, match="two-expert"):
        WanModel.load(
            tiny_root / "ti2v-5B",
            tiny_preset("ti2v-5B"),
            speedups=Speedups(loras=(LoraSpec(path=other, expert="low_noise"),)),
        )
