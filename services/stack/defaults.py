"""Embedded defaults of `wan22 up` when nothing is configured: state under `.wan22/`, a tiny `demo`
model built on first use, videos in `./outputs`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STATE_DIR = Path(".wan22")
DEMO_TASK = "demo"

DEMO_MODELS = """# Written by `wan22 up`: the small demo task (a tiny random-weight model; its videos are noise).
[tasks.demo]
base = "ti2v-5B"
ckpt_dir = "{ckpt}"
world_size = {world_size}
sizes = ["128*96"]
frame_num = 17
sample_steps = 8
fps = 8
"""


def demo_models(state_dir: Path = STATE_DIR, world_size: int = 1) -> Path:
    """The demo models configuration, building the tiny checkpoint if it is not there yet."""
    ckpt = (state_dir / "models" / DEMO_TASK).resolve()
    if not (ckpt / "model_index.json").exists():
        print(f"building the tiny demo model in {ckpt} ...", file=sys.stderr)
        command = [sys.executable, "-m", "services.cli.main", "models", "make-tiny", str(ckpt), "--task", "ti2v-5B"]
        subprocess.run(command, check=True)
    path = state_dir / "models.toml"
    path.write_text(DEMO_MODELS.format(ckpt=ckpt, world_size=world_size))
    return path.resolve()
