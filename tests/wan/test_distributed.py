"""World size 2 over gloo (two real processes) against world size 1 in this process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.wan.support import cli_args, run_cli, tiny_input
from wan.cli_generate import _job_from_args
from wan.distributed import free_port, spawn_local

WORKER = str(Path(__file__).with_name("dist_worker.py")) + ":run"


def cli_command(tiny_root: Path, out: Path) -> list[str]:
    return [
        "generate", "--task", "t2v-A14B", "--ckpt", str(tiny_root / "t2v-A14B"), "--prompt", "snow over a river",
        "--size", "48*32", "--frames", "9", "--steps", "3", "--seed", "21", "--out", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def two_ranks(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ws2")
    cli_job = _job_from_args(cli_args(*cli_command(tiny_root, out / "cli.npy")))
    payload = {"root": str(tiny_root), "out": str(out), "cli_job": cli_job, "cli_port": free_port()}
    spawn_local(WORKER, 2, payload, timeout_s=300)
    return out


def _seen(out: Path, name: str) -> list[dict]:
    return [json.loads((out / f"{name}.rank{rank}.json").read_text()) for rank in range(2)]


@pytest.mark.parametrize(("name", "task"), [("t2v", "t2v-A14B"), ("t2v_fsdp", "t2v-A14B"), ("i2v", "i2v-A14B")])
def test_sequence_parallel_matches_single_process(two_ranks: Path, tiny_models: dict, name: str, task: str) -> None:
    reference = tiny_models[task].generate(tiny_input(task))
    np.testing.assert_allclose(np.load(two_ranks / f"{name}.npy"), reference, rtol=0, atol=1e-5)
    assert [seen["returned_frames"] for seen in _seen(two_ranks, name)] == [True, False]  # only rank 0 decodes


def test_ti2v_matches_and_rank0_inputs_win(two_ranks: Path, tiny_models: dict) -> None:
    reference = tiny_models["ti2v-5B"].generate(tiny_input("ti2v-5B"))
    np.testing.assert_allclose(np.load(two_ranks / "ti2v.npy"), reference, rtol=0, atol=1e-5)


def test_cancel_on_one_rank_stops_every_rank_without_decoding(two_ranks: Path) -> None:
    for seen in _seen(two_ranks, "cancel"):
        assert seen == {"steps": [1, 2], "cancelled_at": 2, "decodes": 0, "returned_frames": False}


def test_block_offload_over_two_ranks_matches_one(two_ranks: Path, tiny_models: dict) -> None:
    reference = tiny_models["t2v-A14B"].generate(tiny_input("t2v-A14B"))
    np.testing.assert_allclose(np.load(two_ranks / "t2v_blocks.npy"), reference, rtol=0, atol=1e-5)
    seen = _seen(two_ranks, "t2v_blocks")
    assert all(rank["misses"] == 0 and rank["uses"] > 0 for rank in seen), seen


def test_cli_world_size_two_matches_world_size_one(two_ranks: Path, tiny_root: Path, tmp_path: Path) -> None:
    assert run_cli(*cli_command(tiny_root, tmp_path / "ws1.npy")) == 0
    np.testing.assert_allclose(np.load(two_ranks / "cli.npy"), np.load(tmp_path / "ws1.npy"), rtol=0, atol=1e-5)


def test_taylorseer_step_cache_over_two_ranks_matches_one(two_ranks: Path, tiny_root: Path) -> None:
    from tests.wan.dist_worker import TAYLORSEER
    from tests.wan.support import tiny_preset
    from wan.model import WanModel

    model = WanModel.load(tiny_root / "t2v-A14B", tiny_preset("t2v-A14B"), speedups=TAYLORSEER)
    reference = model.generate(tiny_input("t2v-A14B", sample_steps=8))
    np.testing.assert_allclose(np.load(two_ranks / "t2v_taylorseer.npy"), reference, rtol=0, atol=1e-5)
    uncached = WanModel.load(tiny_root / "t2v-A14B", tiny_preset("t2v-A14B")).generate(
        tiny_input("t2v-A14B", sample_steps=8)
    )
    assert np.abs(reference - uncached).max() > 1e-5  # the cache did skip work


def test_decode_shared_over_two_ranks_matches_tiled_decode_on_one(two_ranks: Path, tiny_root: Path) -> None:
    from tests.wan.dist_worker import SMALL_TILES
    from tests.wan.support import tiny_preset
    from wan.model import WanModel

    model = WanModel.load(tiny_root / "t2v-A14B", tiny_preset("t2v-A14B"), vae_tiling=True)
    model.components.vae.enable_tiling(**SMALL_TILES)
    reference = model.generate(tiny_input("t2v-A14B", size=(64, 48)))
    np.testing.assert_allclose(np.load(two_ranks / "t2v_pdecode.npy"), reference, rtol=0, atol=1e-5)
    seen = _seen(two_ranks, "t2v_pdecode")
    assert [s["returned_frames"] for s in seen] == [True, False]
    # 12 tiles x 2 latent frames, six tiles each: both ranks decoded, neither decoded it all
    assert [s["decodes"] for s in seen] == [12, 12]
