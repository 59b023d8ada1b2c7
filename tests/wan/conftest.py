"""Tiny random Wan2.2 checkpoints (real diffusers classes and layout), built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wan.support import TASKS, tiny_preset


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core host spinning OpenMP
    workers make every step several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wan.tiny import make_tiny

    root = tmp_path_factory.mktemp("tiny-wan")
    for task in TASKS:
        make_tiny(root / task, task)
    return root


@pytest.fixture(scope="session")
def tiny_models(tiny_root: Path) -> dict:
    """One resident model per task, shared by the single-process tests (as a service would)."""
    from wan.model import WanModel

    return {task: WanModel.load(tiny_root / task, tiny_preset(task)) for task in TASKS}
