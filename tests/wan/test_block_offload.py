"""Block offload (`offload = "blocks"`) on tiny checkpoints: which blocks are on the "device"
before and after every block call, the prefetch order across the expert switch, and frames
identical to `none`.

On a CPU host the device copy is a clone of the host tensors (wan.blockoffload), so a block's
parameters point at other memory exactly while it is fetched; the data pointers show where each
block is. That the copies overlap compute on a side stream and the peak GPU memory are for the
GPU check (`scripts/gpu-check.sh`) to show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.wan.support import tiny_input, tiny_preset
from wan.blockoffload import BlockOffloader, block_tensors
from wan.model import Cancelled, WanModel
from wan.offloadmode import check_offload


@pytest.fixture(scope="module")
def blocks_t2v(tiny_root: Path) -> WanModel:
    return WanModel.load(tiny_root / "t2v-A14B", tiny_preset("t2v-A14B"), offload="blocks")


def offloader_of(model: WanModel) -> BlockOffloader:
    assert isinstance(model.offloader, BlockOffloader)
    return model.offloader


def host_pointers(offloader: BlockOffloader) -> dict[tuple[str, int], set[int]]:
    return {
        (expert, index): {t.data_ptr() for t in block_tensors(block).values()}
        for expert, blocks in offloader.blocks.items()
        for index, block in enumerate(blocks)
    }


@pytest.mark.parametrize("task", ["t2v-A14B", "i2v-A14B", "ti2v-5B"])
def test_frames_equal_those_without_offload(tiny_root: Path, tiny_models: dict, task: str) -> None:
    model = WanModel.load(tiny_root / task, tiny_preset(task), offload="blocks")
    inp = tiny_input(task)
    assert np.array_equal(model.generate(inp), tiny_models[task].generate(inp))
    trace = offloader_of(model).last
    assert trace.misses == [] and trace.uses, "every block was prefetched before it ran"
    assert offloader_of(model).resident == {}


def test_only_the_running_block_and_the_next_are_in_while_a_block_runs(blocks_t2v: WanModel) -> None:
    offloader = offloader_of(blocks_t2v)
    host = host_pointers(offloader)
    seen: list[tuple[tuple[str, int], set[tuple[str, int]]]] = []

    def watch(key: tuple[str, int]):  # the pointers of every block, as the block's forward starts
        def hook(module: torch.nn.Module, args: object) -> None:
            now = host_pointers(offloader)
            seen.append((key, {k for k in now if now[k].isdisjoint(host[k])}))

        return hook

    handles = [
        block.register_forward_pre_hook(watch((expert, index)))
        for expert, blocks in offloader.blocks.items()
        for index, block in enumerate(blocks)
    ]
    try:
        blocks_t2v.generate(tiny_input("t2v-A14B"))
    finally:
        for handle in handles:
            handle.remove()
    order = [key for key, _ in seen]
    assert len(order) == len(offloader.last.uses)
    for position, (key, on_device) in enumerate(seen):
        following = order[position + 1 : position + 2]  # prefetch 1: the next block in run order
        assert key in on_device
        assert on_device <= {key, *following}, (key, on_device)
    assert host_pointers(offloader) == host, "after the job every block is back on its host tensors"
    per_block = max(
        sum(t.numel() * t.element_size() for t in block_tensors(b).values()) for b in offloader.blocks["high_noise"]
    )
    assert offloader.last.peak_bytes <= 2 * per_block


def test_the_last_high_noise_block_prefetches_the_first_low_noise_block(blocks_t2v: WanModel) -> None:
    blocks_t2v.generate(tiny_input("t2v-A14B"))
    trace = offloader_of(blocks_t2v).last
    uses = [key for key, _ in trace.uses]
    assert trace.fetches == uses, "fetched once each, in the order they then ran"
    switch = next(i for i, (expert, _) in enumerate(uses) if expert == "low_noise")
    last_high = uses[switch - 1]
    assert last_high[0] == "high_noise" and uses[switch] == ("low_noise", 0)
    # While the last high-noise block ran, the first low-noise block was already in.
    assert trace.uses[switch - 1][1] == {last_high, ("low_noise", 0)}
    plan = blocks_t2v.forward_plan(tiny_input("t2v-A14B"))
    blocks = len(offloader_of(blocks_t2v).blocks["high_noise"])
    assert len(uses) == len(plan) * blocks and plan.count("low_noise") >= 2


def test_prefetch_two_keeps_two_blocks_ahead(tiny_root: Path, tiny_models: dict) -> None:
    model = WanModel.load(tiny_root / "t2v-A14B", tiny_preset("t2v-A14B"), offload="blocks", offload_prefetch=2)
    inp = tiny_input("t2v-A14B")
    assert np.array_equal(model.generate(inp), tiny_models["t2v-A14B"].generate(inp))
    trace = offloader_of(model).last
    uses = [key for key, _ in trace.uses]
    for position, (key, resident) in enumerate(trace.uses[:-2]):
        assert resident == {key, *uses[position + 1 : position + 3]}
    assert trace.misses == []


def test_guidance_one_on_the_low_noise_expert_runs_one_pass_per_step(blocks_t2v: WanModel) -> None:
    from dataclasses import replace

    inp = replace(tiny_input("t2v-A14B"), guide_scale_2=1.0)
    plan = blocks_t2v.forward_plan(inp)
    highs, lows = plan.count("high_noise"), plan.count("low_noise")
    assert highs % 2 == 0 and highs // 2 + lows == inp.sample_steps
    blocks_t2v.generate(inp)
    assert offloader_of(blocks_t2v).last.misses == []


def test_a_cancel_leaves_no_block_on_the_device(blocks_t2v: WanModel) -> None:
    host = host_pointers(offloader_of(blocks_t2v))
    with pytest.raises(Cancelled):
        blocks_t2v.generate(tiny_input("t2v-A14B"), should_cancel=iter([False, True]).__next__)
    assert offloader_of(blocks_t2v).resident == {} and host_pointers(offloader_of(blocks_t2v)) == host


def test_text_encoder_runs_on_the_cpu_and_blocks_exclude_fp8_and_fsdp(blocks_t2v: WanModel) -> None:
    assert blocks_t2v.components.text_encoder.device.type == "cpu"
    with pytest.raises(ValueError, match="fp8"):
        check_offload("blocks", fsdp=False, fp8=True)
    with pytest.raises(ValueError, match="FSDP"):
        check_offload("blocks", fsdp=True)
    with pytest.raises(ValueError, match="offload_prefetch"):
        BlockOffloader({}, torch.device("cpu"), prefetch=0)


@pytest.mark.slow  # dynamo traces the block once (aot_eager on a CPU): several seconds
def test_compiled_blocks_stream_without_recompiling(tiny_root: Path, tiny_models: dict) -> None:
    from torch._dynamo.utils import counters

    from wan.speedups import Speedups

    torch._dynamo.reset()
    counters.clear()
    task = "t2v-A14B"
    speedups = Speedups(compile_blocks=True)
    model = WanModel.load(tiny_root / task, tiny_preset(task), offload="blocks", speedups=speedups)
    frames = model.generate(tiny_input(task))
    np.testing.assert_allclose(frames, tiny_models[task].generate(tiny_input(task)), atol=1e-4)
    with torch._dynamo.config.patch(error_on_recompile=True):  # new device copies each job: no recompile
        again = model.generate(tiny_input(task))
    np.testing.assert_array_equal(again, frames)
    assert counters["stats"]["unique_graphs"] == 1 and offloader_of(model).last.misses == []
