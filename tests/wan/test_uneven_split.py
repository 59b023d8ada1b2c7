"""Token counts that do not divide by the ranks: Ulysses over 2 gloo ranks against one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.wan.dist_worker import UNEVEN_JOBS, uneven_input
from tests.wan.support import tiny_input
from wan.distributed import spawn_local
from wan.model import WanModel
from wan.spec import ModelSpec

WORKER = str(Path(__file__).with_name("dist_worker.py")) + ":run_uneven"
# Float32 on a CPU; the shards only change the order of a few reductions (measured: under 1e-6).
ATOL = 1e-5


@pytest.fixture(scope="module")
def two_ranks(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uneven")
    spawn_local(WORKER, 2, {"root": str(tiny_root), "out": str(out)}, timeout_s=300)
    return out


@pytest.mark.parametrize("name", sorted(UNEVEN_JOBS))
def test_odd_token_count_over_two_ranks_matches_one(two_ranks: Path, tiny_models: dict, name: str) -> None:
    model: WanModel = tiny_models[UNEVEN_JOBS[name][0]]
    inp = uneven_input(name)
    reference = model.generate(inp)
    tokens = ModelSpec.of(model.components).tokens(model.last_input.width, model.last_input.height, inp.frame_num)
    assert tokens % 2 == 1, "the job must not split evenly over 2 ranks"
    np.testing.assert_allclose(np.load(two_ranks / f"uneven_{name}.npy"), reference, rtol=0, atol=ATOL)


def test_even_job_after_an_uneven_one_matches_one_process(two_ranks: Path, tiny_models: dict) -> None:
    reference = tiny_models["ti2v-5B"].generate(tiny_input("ti2v-5B"))
    np.testing.assert_allclose(np.load(two_ranks / "even_after_uneven.npy"), reference, rtol=0, atol=ATOL)
