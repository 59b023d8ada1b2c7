"""CFG parallelism (cfg_degree 2) over gloo against world size 1 in this process: world size 2 =
cfg 2 x 1 and world size 4 = cfg 2 x Ulysses 2; and its refusal of guidance 1.0 at load (models
TOML), per request (ingest), per job (every rank) and in `wan22 generate`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.wan.cfg_worker import GUIDANCE, SINGLE_PASS
from tests.wan.dist_worker import TAYLORSEER, uneven_input
from tests.wan.support import TASKS, cli_args, run_cli, tiny_input, tiny_preset
from wan.cli_generate import _job_from_args
from wan.distributed import free_port, spawn_local
from wan.job import ParallelContext
from wan.model import WanModel
from wan.parallel import Degrees, degrees

WORKER = str(Path(__file__).with_name("cfg_worker.py"))
ATOL = 1e-5  # float32 on a CPU; the shards only change the order of a few reductions


def cli_command(tiny_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "generate", "--task", "t2v-A14B", "--ckpt", str(tiny_root / "t2v-A14B"), "--prompt", "snow over a river",
        "--size", "48*32", "--frames", "9", "--steps", "3", "--seed", "21", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cfg2(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cfg2")
    cli = cli_command(tiny_root, out / "cli.npy", "--world-size", "2", "--cfg-degree", "2")
    payload = {
        "root": str(tiny_root),
        "out": str(out),
        "cli_job": _job_from_args(cli_args(*cli)),
        "cli_port": free_port(),
    }
    spawn_local(f"{WORKER}:run_two", 2, payload, timeout_s=600)
    return out


@pytest.fixture(scope="module")
def cfg2_ulysses2(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cfg2x2")
    spawn_local(f"{WORKER}:run_four", 4, {"root": str(tiny_root), "out": str(out)}, timeout_s=900)
    return out


def _seen(out: Path, name: str, ranks: int) -> list[dict]:
    return [json.loads((out / f"{name}.rank{rank}.json").read_text()) for rank in range(ranks)]


@pytest.mark.parametrize("layout", ["cfg2", "cfg2_ulysses2"])
@pytest.mark.parametrize("task", TASKS)
def test_cfg_parallel_matches_world_size_one(
    request: pytest.FixtureRequest, tiny_models: dict, layout: str, task: str
) -> None:
    out: Path = request.getfixturevalue(layout)
    reference = tiny_models[task].generate(tiny_input(task))
    frames = np.load(out / f"{task}.npy")
    print(f"{layout} {task}: max |ws - ws1| = {np.abs(frames - reference).max():.2e}")
    np.testing.assert_allclose(frames, reference, rtol=0, atol=ATOL)
    ranks = 2 if layout == "cfg2" else 4
    assert [seen["returned_frames"] for seen in _seen(out, task, ranks)] == [True] + [False] * (ranks - 1)


def test_block_offload_with_one_pass_per_rank(cfg2: Path, tiny_models: dict) -> None:
    reference = tiny_models["t2v-A14B"].generate(tiny_input("t2v-A14B"))
    np.testing.assert_allclose(np.load(cfg2 / "t2v_blocks.npy"), reference, rtol=0, atol=ATOL)
    assert [seen["misses"] for seen in _seen(cfg2, "t2v_blocks", 2)] == [0, 0]


def test_experts_at_different_guidance_each_pass_runs_once_on_its_half(cfg2_ulysses2: Path, tiny_models: dict) -> None:
    model = tiny_models["t2v-A14B"]
    inp = tiny_input("t2v-A14B", guide_scale=GUIDANCE)
    text_seen: dict[str, list[float]] = {"high_noise": [], "low_noise": []}
    experts = {"high_noise": model.components.transformer, "low_noise": model.components.transformer_2}
    hooks = [
        e.blocks[0].register_forward_pre_hook(
            lambda _, args, n=name: text_seen[n].append(float(args[1].double().sum()))
        )
        for name, e in experts.items()
    ]
    try:
        reference = model.generate(inp)
    finally:
        for hook in hooks:
            hook.remove()
    frames = np.load(cfg2_ulysses2 / "guidance.npy")
    np.testing.assert_allclose(frames, reference, rtol=0, atol=ATOL)
    default = np.load(cfg2_ulysses2 / "t2v-A14B.npy")  # the preset's guidance (3, 4): another video
    assert np.abs(frames - default).max() > 1e-3
    # One process runs the prompt's pass then the negative prompt's, per step of each expert; here
    # ranks 0-1 ran only the first and ranks 2-3 only the second: no pass twice, none left out.
    for name, both in text_seen.items():
        assert len(both) >= 2 and both[0] != both[1], name  # the expert ran, both passes each step
        seen = [rank["text_seen"][name] for rank in _seen(cfg2_ulysses2, "guidance", 4)]
        assert seen == [both[0::2], both[0::2], both[1::2], both[1::2]]


def test_odd_token_count_on_each_half(cfg2_ulysses2: Path, tiny_models: dict) -> None:
    reference = tiny_models["t2v-A14B"].generate(uneven_input("t2v"))  # 27 tokens
    np.testing.assert_allclose(np.load(cfg2_ulysses2 / "uneven_t2v.npy"), reference, rtol=0, atol=ATOL)
    shards = [seen["shard_tokens"] for seen in _seen(cfg2_ulysses2, "uneven_t2v", 4)]
    assert shards == [[14], [13], [14], [13]]  # each half splits the whole sequence over its two ranks


def test_taylorseer_step_cache(cfg2_ulysses2: Path, tiny_root: Path, tiny_models: dict) -> None:
    inp = tiny_input("t2v-A14B", sample_steps=8)
    cached = WanModel.load(tiny_root / "t2v-A14B", tiny_preset("t2v-A14B"), speedups=TAYLORSEER)
    reference = cached.generate(inp)
    np.testing.assert_allclose(np.load(cfg2_ulysses2 / "taylorseer.npy"), reference, rtol=0, atol=ATOL)
    assert np.abs(reference - tiny_models["t2v-A14B"].generate(inp)).max() > 1e-5  # the cache did skip work


def test_fsdp_within_each_half(cfg2_ulysses2: Path, tiny_models: dict) -> None:
    reference = tiny_models["t2v-A14B"].generate(tiny_input("t2v-A14B"))
    np.testing.assert_allclose(np.load(cfg2_ulysses2 / "t2v_fsdp.npy"), reference, rtol=0, atol=ATOL)


def test_cancel_seen_by_one_rank_stops_both_halves_at_the_next_step(cfg2_ulysses2: Path) -> None:
    for seen in _seen(cfg2_ulysses2, "cancel", 4):
        assert seen == {"steps": [1, 2], "cancelled_at": 2, "decodes": 0, "returned_frames": False}


def test_guidance_one_is_refused_on_every_rank_and_the_gang_runs_on(cfg2: Path) -> None:
    expected = {"t2v-A14B": "guidance 1.0 for the high-noise expert", "ti2v-5B": "guidance 1.0 for the expert"}
    for task in SINGLE_PASS:
        errors = [seen["error"] for seen in _seen(cfg2, f"refused_{task}", 2)]
        assert errors[0] == errors[1] and expected[task] in errors[0] and "cfg_degree 1" in errors[0]
    # The next job of the same models ran (test_cfg_parallel_matches_world_size_one checks its frames).
    assert all((cfg2 / f"{task}.npy").is_file() for task in SINGLE_PASS)


def test_cli_cfg_degree_two_matches_world_size_one(cfg2: Path, tiny_root: Path, tmp_path: Path) -> None:
    assert run_cli(*cli_command(tiny_root, tmp_path / "ws1.npy")) == 0
    np.testing.assert_allclose(np.load(cfg2 / "cli.npy"), np.load(tmp_path / "ws1.npy"), rtol=0, atol=ATOL)


def test_cli_refuses_before_starting_any_process(tiny_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "never.npy"
    for extra, message in [
        (("--guide-scale", "3", "1"), "guidance 1.0 for the high-noise expert"),
        (("--guide-scale", "1"), "guidance 1.0 for the high-noise and the low-noise expert"),
        (("--world-size", "3"), "--cfg-degree 2 must divide --world-size 3"),
    ]:
        argv = cli_command(tiny_root, out, "--cfg-degree", "2", "--world-size", "2", *extra)
        assert run_cli(*argv) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("task", TASKS)
def test_room_for_the_other_prediction_has_its_shape_and_dtype_in_bf16(tiny_root: Path, task: str) -> None:
    """The unconditional half allocates the conditional prediction before it exists; on GPUs the
    experts run in bf16 (with diffusers' fp32 modules), and i2v takes 36 channels in, 16 out."""
    import torch

    from wan.cfgparallel import _empty_prediction

    expert = WanModel.load(tiny_root / task, tiny_preset(task), dtype=torch.bfloat16).components.transformer
    cfg = expert.config
    latents = torch.randn(1, cfg.in_channels, 2, 4, 4, dtype=torch.bfloat16)
    text = torch.randn(1, 8, cfg.text_dim, dtype=torch.bfloat16)
    with torch.no_grad():
        (real,) = expert(
            hidden_states=latents, timestep=torch.tensor([500.0]), encoder_hidden_states=text, return_dict=False
        )
    room = _empty_prediction(expert, (), {"hidden_states": latents})
    assert (room.shape, room.dtype) == (real.shape, real.dtype) and real.dtype == torch.bfloat16
    assert room.shape[1] == (16 if task != "ti2v-5B" else 48)


def test_a_gang_of_one_refuses_cfg_degree_two(tiny_root: Path) -> None:
    with pytest.raises(ValueError, match="cfg_degree 2 must be 1 or 2 and divide the world size 1"):
        WanModel.load(tiny_root / "ti2v-5B", tiny_preset("ti2v-5B"), parallel=ParallelContext(cfg_degree=2))


def test_degrees_of_a_cfg_parallel_gang() -> None:
    assert degrees(ParallelContext(world_size=8, cfg_degree=2), 40, None) == Degrees(ulysses=4, ring=1, cfg=2)
    assert degrees(ParallelContext(world_size=8, cfg_degree=2, ulysses_degree=2), 40, "flash") == Degrees(2, 2, 2)
    assert degrees(ParallelContext(world_size=2, cfg_degree=2), 40, None).total == 1
    with pytest.raises(ValueError, match="cfg_degree 3 must be 1 or 2"):
        degrees(ParallelContext(world_size=6, cfg_degree=3), 40, None)
    with pytest.raises(ValueError, match="cfg_degree 2 must be 1 or 2 and divide the world size 3"):
        degrees(ParallelContext(world_size=3, cfg_degree=2), 40, None)
    with pytest.raises(ValueError, match="ulysses_degree 8 must divide the world size 8 / cfg_degree 2 = 4"):
        degrees(ParallelContext(world_size=8, cfg_degree=2, ulysses_degree=8), 40, None)


TOML_REFUSALS = [
    ("world_size = 8\ncfg_degree = 2\nguide_scale = [1.0, 1.0]", "guide_scale [1.0, 1.0] with cfg_degree 2 runs"),
    ("world_size = 6\ncfg_degree = 3", "cfg_degree must be 1 or 2"),
    ("world_size = 3\ncfg_degree = 2", "cfg_degree 2 must divide world_size 3"),
    (
        "world_size = 8\ncfg_degree = 2\nulysses_degree = 8",
        "ulysses_degree 8 must divide world_size 8 / cfg_degree 2 = 4",
    ),
]


@pytest.mark.parametrize(("fields", "message"), TOML_REFUSALS)
def test_models_toml_refuses_a_layout_that_cannot_run(tmp_path: Path, fields: str, message: str) -> None:
    from services.models_config import load_models
    from services.settings import SettingsError

    path = tmp_path / "models.toml"
    path.write_text(f'[tasks.t2v-4step]\nbase = "t2v-A14B"\nsample_steps = 4\n{fields}\n')
    with pytest.raises(SettingsError, match=re.escape(message)) as err:
        load_models(str(path))
    assert "[tasks.t2v-4step]" in str(err.value)


def test_models_toml_takes_cfg_degree_two(tmp_path: Path) -> None:
    from services.models_config import load_models

    path = tmp_path / "models.toml"
    path.write_text("[tasks.t2v-A14B]\nworld_size = 8\ncfg_degree = 2\n")
    served = load_models(str(path)).get("t2v-A14B")
    assert served is not None and (served.world_size, served.cfg_degree) == (8, 2)


def test_ingest_rejects_guidance_one_for_a_cfg_parallel_task() -> None:
    from services.contracts import GenerateRequest
    from services.ingest.invalid import Invalid
    from services.ingest.normalize import Normalizer
    from services.ingest.settings import IngestSettings
    from services.models_config import ModelsConfig, ServedTask
    from wan.presets import PRESETS

    served = ServedTask(name="t2v-A14B", preset=PRESETS["t2v-A14B"], world_size=8, cfg_degree=2)
    normalize = Normalizer(ModelsConfig({"t2v-A14B": served}), IngestSettings())
    job = normalize(GenerateRequest(task="t2v-A14B", prompt="a fox", guide_scale=[2.0, 5.0]), "1-0")
    assert job.guide_scale == (2.0, 5.0)
    for scale, expert in [([3.0, 1.0], "the high-noise expert"), (1.0, "the high-noise and the low-noise expert")]:
        with pytest.raises(Invalid) as err:
            normalize(GenerateRequest(task="t2v-A14B", prompt="a fox", guide_scale=scale), "1-0")
        assert err.value.field == "guide_scale" and f"guidance 1.0 for {expert}" in err.value.message
