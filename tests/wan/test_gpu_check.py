"""The GPU check script's dry run: the noise check passes, every offload mode runs (block offload with
no block missed), every option row is printed, FP8 is refused with its reason on a CPU, cfg2 runs on
two gloo processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_prints_every_option() -> None:
    result = subprocess.run(
        ["bash", "scripts/gpu-check.sh", "--cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    noise = result.stdout.split("option ", 1)[0]
    offload = {line.split()[0]: line for line in noise.splitlines() if line.startswith("offload=")}
    assert set(offload) == {"offload=none", "offload=experts", "offload=blocks", "offload=blocks2"}
    assert all("block misses: 0" in line and " s/step " in line for line in offload.values()), offload
    assert "noise cpu: the CPU host's draw: yes" in noise and "noise device: the release's draw: yes" in noise
    table = result.stdout.split("option ", 1)[1].splitlines()
    rows = {line.split()[0]: line for line in table[1:] if line.strip()}
    assert set(rows) == {"baseline", "guidance1", "compile", "fp8", "taylorseer", "cfg2"}
    for name in ("baseline", "guidance1", "compile", "taylorseer", "cfg2"):  # cfg2: two gloo processes
        seconds = float(rows[name].split()[1])
        assert seconds > 0
    assert "refused: fp8 needs a CUDA GPU" in rows["fp8"]
    assert rows["baseline"].split()[-1] == "1.00x"
