"""Token counts that do not divide by the ranks: Ulysses over 2 gloo ranks against one process,
and the pieces of `wan.uneven` on their own."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.wan.dist_worker import UNEVEN_JOBS, uneven_input
from tests.wan.support import tiny_input
from wan.distributed import spawn_local
from wan.model import WanModel
from wan.spec import ModelSpec
from wan.uneven import pad_to, plan_without_output_gather, splits_unevenly, uneven_split

WORKER = str(Path(__file__).with_name("dist_worker.py")) + ":run_uneven"
# Float32 on a CPU; the shards only change the order of a few reductions.
ATOL = 1e-5


@pytest.fixture(scope="module")
def two_ranks(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uneven")
    spawn_local(WORKER, 2, {"root": str(tiny_root), "out": str(out)}, timeout_s=300)
    return out


def _seen(out: Path, name: str) -> list[dict]:
    return [json.loads((out / f"{name}.rank{rank}.json").read_text()) for rank in range(2)]


@pytest.mark.parametrize("name", sorted(UNEVEN_JOBS))
def test_odd_token_count_over_two_ranks_matches_one(two_ranks: Path, tiny_models: dict, name: str) -> None:
    model: WanModel = tiny_models[UNEVEN_JOBS[name][0]]
    inp = uneven_input(name)
    reference = model.generate(inp)
    tokens = ModelSpec.of(model.components).tokens(model.last_input.width, model.last_input.height, inp.frame_num)
    assert tokens % 2 == 1, "the job must not split evenly over 2 ranks"
    # Each rank ran its blocks over its own shard, rank 0 holding the one extra token.
    assert [seen["shard_tokens"] for seen in _seen(two_ranks, f"uneven_{name}")] == [[tokens // 2 + 1], [tokens // 2]]
    frames = np.load(two_ranks / f"uneven_{name}.npy")
    print(f"{name}: {tokens} tokens, max |ws2 - ws1| = {np.abs(frames - reference).max():.2e}")
    np.testing.assert_allclose(frames, reference, rtol=0, atol=ATOL)


def test_even_job_after_an_uneven_one_matches_one_process(two_ranks: Path, tiny_models: dict) -> None:
    reference = tiny_models["ti2v-5B"].generate(tiny_input("ti2v-5B"))
    np.testing.assert_allclose(np.load(two_ranks / "even_after_uneven.npy"), reference, rtol=0, atol=ATOL)


def test_odd_token_count_with_fsdp_matches_one_process(two_ranks: Path, tiny_models: dict) -> None:
    reference = tiny_models["t2v-A14B"].generate(uneven_input("t2v"))
    np.testing.assert_allclose(np.load(two_ranks / "uneven_t2v_fsdp.npy"), reference, rtol=0, atol=ATOL)


def test_unequal_shards_gather_in_rank_order(two_ranks: Path) -> None:
    expected = np.arange(10, dtype=np.float32).reshape(1, 5, 2).tolist()
    assert [seen["gathered"] for seen in _seen(two_ranks, "gather")] == [expected, expected]


def test_pad_to_appends_zeros_along_the_dim() -> None:
    x = torch.ones(1, 3, 2)
    padded = pad_to(x, 1, 5)
    assert padded.shape == (1, 5, 2)
    assert torch.equal(padded[:, :3], x) and not padded[:, 3:].any()
    assert pad_to(x, 1, 3) is x


def test_splits_unevenly() -> None:
    assert splits_unevenly(32130, 4) and splits_unevenly(27, 2)  # i2v 832*480 with a 4:3 image on 4 ranks
    assert not splits_unevenly(32760, 8) and not splits_unevenly(27, 1)


def test_uneven_split_is_on_for_the_job_only() -> None:
    configs = [SimpleNamespace(ulysses_anything=False) for _ in range(2)]
    experts = [SimpleNamespace(_parallel_config=SimpleNamespace(context_parallel_config=c)) for c in configs]
    with uneven_split(experts, enabled=False):
        assert not any(c.ulysses_anything for c in configs)
    with pytest.raises(RuntimeError), uneven_split(experts, enabled=True):
        assert all(c.ulysses_anything for c in configs)
        raise RuntimeError("a failed job")
    assert not any(c.ulysses_anything for c in configs)


def test_only_the_output_gather_leaves_the_plan() -> None:
    from diffusers import WanTransformer3DModel

    plan = WanTransformer3DModel._cp_plan
    assert plan_without_output_gather(plan) == {name: entry for name, entry in plan.items() if name != "proj_out"}
    with pytest.raises(RuntimeError, match="proj_out"):
        plan_without_output_gather({"rope": plan["rope"]})


def test_cli_refuses_an_uneven_job_only_with_ring(tiny_root: Path, tmp_path: Path) -> None:
    from tests.wan.support import cli_args
    from wan.cli_generate import _check_sequence_split, _job_from_args

    argv = ["generate", "--task", "t2v-A14B", "--ckpt", str(tiny_root / "t2v-A14B"), "--prompt", "snow"]
    argv += ["--size", "48*48", "--frames", "9", "--out", str(tmp_path / "out.npy")]  # 27 tokens
    _check_sequence_split(_job_from_args(cli_args(*argv)), world_size=2)  # Ulysses 2
    with pytest.raises(ValueError, match="ring attention"):
        _check_sequence_split(_job_from_args(cli_args(*argv, "--ulysses-degree", "2")), world_size=4)
