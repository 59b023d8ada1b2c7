"""`wan22 demo` (what `make demo` runs) on a clean state directory produces a decodable mp4."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.services_proc import ROOT
from wan.video import probe_mp4


def test_demo_produces_a_decodable_video(tmp_path: Path):
    command = [
        sys.executable,
        "-m",
        "services.cli.main",
        "demo",
        "--state-dir",
        str(tmp_path / "state"),
        "--storage",
        str(tmp_path / "outputs"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    match = re.search(r"video:\s+(\S+\.mp4)", done.stderr)
    assert match, done.stderr[-2000:]
    video = Path(match.group(1))
    frames, width, height = probe_mp4(video.read_bytes())[:3]
    assert (frames, width, height) == (17, 128, 96)
    assert (video.parent / "poster.jpg").stat().st_size > 0
    assert "dashboard: http://127.0.0.1:" in done.stderr
    assert (tmp_path / "state" / "redis" / "appendonlydir").is_dir()  # the embedded Redis kept an AOF
