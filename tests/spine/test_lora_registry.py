"""The LoRA registry of the models TOML: named entries and a directory of files, checked at
load; `wan22 models list` shows what a request may pick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.models_config import load_models
from services.settings import SettingsError

TOML = """
[tasks.t2v-A14B]
ckpt_dir = "/models/t2v"
[tasks.t2v-A14B.lora_registry]
dir = "{dir}"
switch = "runtime"
[[tasks.t2v-A14B.lora_registry.adapters]]
name = "anime"
path = "/models/loras/anime_high.safetensors"
expert = "high_noise"
scale = 0.8
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_named_entries_and_directory_files(tmp_path: Path) -> None:
    loras = tmp_path / "loras"
    loras.mkdir()
    (loras / "detail.safetensors").write_bytes(b"")
    (loras / "anime.safetensors").write_bytes(b"")  # a named entry wins over a file of its name
    (loras / "notes.txt").write_text("not an adapter")
    served = load_models(str(write(tmp_path, TOML.format(dir=loras)))).tasks["t2v-A14B"]
    entries = served.lora_registry.entries()
    assert sorted(entries) == ["anime", "detail"]
    assert (entries["anime"].expert, entries["anime"].scale) == ("high_noise", 0.8)
    assert entries["detail"].path == str(loras / "detail.safetensors") and served.lora_registry.switch == "runtime"


def test_a_directory_this_process_cannot_see_adds_nothing(tmp_path: Path) -> None:
    served = load_models(str(write(tmp_path, TOML.format(dir=tmp_path / "absent")))).tasks["t2v-A14B"]
    assert list(served.lora_registry.entries()) == ["anime"]


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ('[tasks.ti2v-5B.lora_registry]\nadapters = [{ name = "a", path = "/a", expert = "low_noise" }]', "one-expert"),
        ('[tasks.t2v-A14B.lora_registry]\nadapters = [{ name = "a b", path = "/a" }]', "lora_registry"),
        ('[tasks.t2v-A14B.lora_registry]\nswitch = "sometimes"', "switch"),
        ('[tasks.t2v-A14B.lora_registry]\nadapters = [{ name = "a", file = "/a" }]', "file"),
    ],
)
def test_bad_registries_stop_the_load_naming_the_task(tmp_path: Path, table: str, needle: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_models(str(write(tmp_path, table)))
    assert "WAN22_MODELS: [tasks." in str(caught.value) and needle in str(caught.value)


def test_models_list_prints_every_task_with_its_loras(tmp_path: Path) -> None:
    models = write(tmp_path, TOML.format(dir=tmp_path))
    command = [sys.executable, "-m", "services.cli.main", "models", "list", "--json", "--models", str(models)]
    shown = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["models"]
    by_id = {row["id"]: row for row in shown}
    assert by_id["t2v-A14B"]["loras"] == [{"name": "anime", "expert": "high_noise", "scale": 0.8}]
    assert by_id["ti2v-5B"]["loras"] == [] and by_id["ti2v-5B"]["fps"] == 24
    table = subprocess.run([*command[:-3], "--models", str(models)], check=True, capture_output=True, text=True)
    assert "anime (high_noise, 0.8)" in table.stdout


def test_a_name_not_seen_yet_reads_the_directory_again(tmp_path: Path) -> None:
    from services.models_config import AdapterLookup

    served = load_models(str(write(tmp_path, TOML.format(dir=tmp_path)))).tasks["t2v-A14B"]
    lookup = AdapterLookup(served.lora_registry)
    assert lookup.get("late") is None
    (tmp_path / "late.safetensors").write_bytes(b"")
    entry = lookup.get("late")
    assert entry is not None and entry.path == str(tmp_path / "late.safetensors")
