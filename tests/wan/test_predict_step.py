"""bench/predict_step.py: the predicted s/step table in docs/performance.md is what the script prints
today, and its communication figures agree with the worked-out section beside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def markdown() -> str:
    done = subprocess.run(
        [sys.executable, "bench/predict_step.py", "--markdown"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_docs_table_is_the_scripts_output() -> None:
    docs = (ROOT / "docs" / "performance.md").read_text()
    tables = [block.strip() for block in markdown().split("\n\n") if block.strip()]
    assert len(tables) >= 2
    for table in tables:
        assert table in docs, "docs/performance.md is out of date: run python bench/predict_step.py --markdown"


def test_layouts_scale_below_linear_and_the_preset_sends_least() -> None:
    rows = {}
    for line in markdown().splitlines()[2:]:
        if not line.startswith("| ") or line.startswith("|---"):
            break
        cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
        rows[cells[0]] = {"gpus": int(cells[1]), "sent_gb": float(cells[4]), "speedup": float(cells[7].rstrip("x"))}
    preset, ulysses = rows["cfg 2 x Ulysses 4 (8-GPU preset)"], rows["Ulysses 8"]
    assert preset["sent_gb"] < ulysses["sent_gb"]
    assert all(1.0 <= row["speedup"] <= row["gpus"] for row in rows.values()), rows
