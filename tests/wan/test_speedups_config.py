"""Speed options per task in the models TOML, and the refusals that need no GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.models_config import load_models
from services.settings import SettingsError
from tests.wan.support import tiny_preset
from wan.model import WanModel
from wan.speedups import LoraSpec, Speedups, StepCacheSpec

TOML = """
[tasks.t2v-fast]
base = "t2v-A14B"
ckpt_dir = "/models/t2v"
sample_steps = 4
sample_shift = 5.0
guide_scale = [1.0, 1.0]
loras = [
  { path = "/models/high.safetensors", expert = "high_noise" },
  { path = "/models/low.safetensors", expert = "low_noise", scale = 0.8 },
]
step_cache = { kind = "taylorseer", interval = 3 }
compile_blocks = true
"""


def test_a_task_sets_its_own_steps_shift_guidance_and_speedups(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(TOML)
    served = load_models(str(path)).get("t2v-fast")
    assert served is not None
    assert (served.preset.sample_steps, served.preset.sample_shift, served.preset.guide_scale) == (4, 5.0, (1.0, 1.0))
    assert served.speedups == Speedups(
        loras=(
            LoraSpec(path="/models/high.safetensors", expert="high_noise"),
            LoraSpec(path="/models/low.safetensors", expert="low_noise", scale=0.8),
        ),
        step_cache=StepCacheSpec(kind="taylorseer", interval=3),
        compile_blocks=True,
    )
    plain = load_models(str(path)).get("t2v-A14B")
    assert plain is not None and plain.speedups == Speedups()  # everything off by default


@pytest.mark.parametrize(
    "line",
    [
        'loras = [{ path = "x", expert = "middle" }]',
        'step_cache = { kind = "magic" }',
        "step_cache = { kind = 'first_block', thresold = 1 }",
    ],
)
def test_bad_speedups_are_refused_at_start(tmp_path: Path, line: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(f'[tasks.x]\nbase = "t2v-A14B"\n{line}\n')
    with pytest.raises(SettingsError, match=r"\[tasks.x\]"):
        load_models(str(path))


def test_fp8_is_refused_on_a_cpu_with_the_reason(tiny_root: Path) -> None:
    with pytest.raises(ValueError, match=r"fp8 needs a CUDA GPU with compute capability >= 8\.9.*cpu"):
        WanModel.load(tiny_root / "ti2v-5B", tiny_preset("ti2v-5B"), speedups=Speedups(fp8=True))


def test_a_rank_loads_the_model_with_its_task_speedups(tiny_root: Path) -> None:
    import msgspec

    from services.generator.rank import RankWorker
    from services.models_config import ServedTask

    served = ServedTask(name="x", preset=tiny_preset("ti2v-5B"), ckpt_dir=str(tiny_root / "ti2v-5B"), fp8=True)
    worker = RankWorker(1, 1, "redis://127.0.0.1:1/0", "wan22", 0)  # not rank 0: no Redis needed
    with pytest.raises(ValueError, match="fp8 needs a CUDA GPU"):
        worker.load(msgspec.msgpack.encode(served))
    cached = msgspec.structs.replace(served, fp8=False, step_cache=StepCacheSpec(kind="taylorseer"))
    worker.load(msgspec.msgpack.encode(cached))
    assert worker.model.speedups == cached.speedups
    assert worker.model.components.transformer.is_cache_enabled
