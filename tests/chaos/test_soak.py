"""Nothing lost: the whole stack under load and faults. The short form runs in `make test`; the long
form (`make soak`, ≥ 500 requests) is marked `soak`."""

from __future__ import annotations

import os

import anyio
import pytest

from services.redisconn import connect
from tests.chaos import soak as soak_module
from tests.chaos import verify


async def run(tmp_path, tiny_ckpt, n: int, spread_s: float, fault_gap_s: float, quiesce_s: float) -> None:
    saved = dict(os.environ)
    soak = await soak_module.start(tmp_path, tiny_ckpt, n)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(soak.stack.run)
            try:
                await soak.stack.wait_ready(300)
                soak.started = anyio.current_time()
                async with anyio.create_task_group() as load:
                    load.start_soon(soak_module.submit_all, soak, spread_s)
                    load.start_soon(soak_module.inject_faults, soak, fault_gap_s)
                redis = connect(soak.stack.env["WAN22_REDIS_URL"])
                try:
                    quiet_s = await verify.quiesce(redis, soak, quiesce_s)
                    checks = await verify.check(redis, soak)
                finally:
                    await redis.aclose()
            finally:
                soak.stack.stop()
    finally:
        soak.receiver.stop()
        os.environ.clear()
        os.environ.update(saved)
    report = verify.table(checks, soak.faults, quiet_s)
    print("\n" + report)
    (tmp_path / "soak-report.txt").write_text(report)
    assert all(c.ok for c in checks), report
    assert len(soak.faults) == 6, report


@pytest.mark.slow
async def test_soak_short(tmp_path, tiny_ckpt):
    await run(tmp_path, tiny_ckpt, n=60, spread_s=25, fault_gap_s=5, quiesce_s=400)


@pytest.mark.soak
async def test_soak_long(tmp_path, tiny_ckpt):
    await run(
        tmp_path,
        tiny_ckpt,
        n=int(os.environ.get("WAN22_SOAK_REQUESTS", "500")),
        spread_s=240,
        fault_gap_s=30,
        quiesce_s=1800,
    )
