"""Wire contracts, schema freshness, settings and key names."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest

from services import contracts, schema
from services.keys import Keys
from services.models_config import load_models
from services.settings import CommonSettings, SettingsError, load
from wan.presets import RELEASE_NEGATIVE_PROMPT


def test_committed_schemas_are_current():
    for name, text in schema.render().items():
        path = schema.DEFAULT_DIR / name
        assert path.exists(), f"{path} missing: run `wan22 schema`"
        assert path.read_text() == text, f"{path} is stale: run `wan22 schema` and commit"


def test_schema_descriptions_do_not_depend_on_docstring_dedent():
    # Older msgspec releases kept a docstring's indentation, newer ones dedent it.
    dedented = "A raw request as the Go side XADDs it\nor as POST sends it.\n\nSecond paragraph."
    indented = "A raw request as the Go side XADDs it\n    or as POST sends it.\n    \n    Second paragraph.  "
    expected = "A raw request as the Go side XADDs it or as POST sends it.\n\nSecond paragraph."
    assert schema.normalise_description(dedented) == expected
    assert schema.normalise_description(indented) == expected


def test_event_union_round_trips_with_entry_layout():
    event = contracts.Completed(task_id="t1", video_url="s3://b/t1/video.mp4")
    fields = contracts.event_entry(event)
    assert fields["type"] == "completed" and fields["task_id"] == "t1"
    decoded = contracts.event_decoder.decode(fields["payload"])
    assert isinstance(decoded, contracts.Completed) and decoded.ts > 0


def test_completed_reports_the_video_and_older_payloads_still_decode():
    event = contracts.Completed(task_id="t1", video_url="v", width=464, height=832, frame_num=81, fps=16)
    decoded = contracts.event_decoder.decode(contracts.event_entry(event)["payload"])
    assert (decoded.width, decoded.height, decoded.frame_num, decoded.fps) == (464, 832, 81, 16)
    old = contracts.event_decoder.decode(b'{"type": "completed", "task_id": "t1", "video_url": "v"}')
    assert (old.width, old.height, old.frame_num, old.fps) == (0, 0, 0, 0)
    state = contracts.TaskState(task_id="t", status="completed", width=464, height=832, frame_num=81, fps=16)
    assert contracts.state_from_hash(contracts.state_to_hash(state)) == state


def test_request_constraints_name_the_field():
    with pytest.raises(msgspec.ValidationError, match=r"\$\.frame_num"):
        contracts.request_decoder.decode(b'{"task": "t2v-A14B", "frame_num": 0}')
    with pytest.raises(msgspec.ValidationError, match=r"\$\.task_id"):
        contracts.request_decoder.decode(b'{"task": "t2v-A14B", "task_id": "../etc"}')


def test_task_state_hash_round_trip():
    state = contracts.TaskState(task_id="t", status="running", progress=42.5, attempts=2)
    raw = contracts.state_to_hash(state)
    assert all(isinstance(v, str) for v in raw.values())
    assert contracts.state_from_hash(raw) == state


def test_settings_from_env_and_errors_name_the_variable():
    settings = load(CommonSettings, {"WAN22_PREFIX": "blue", "WAN22_LEASE_MS": "5000"})
    assert settings.prefix == "blue" and settings.lease_ms == 5000
    with pytest.raises(SettingsError, match="WAN22_LEASE_MS"):
        load(CommonSettings, {"WAN22_LEASE_MS": "soon"})
    with pytest.raises(SettingsError, match="WAN22_REDIS_URL"):
        load(CommonSettings, {"WAN22_REDIS_URL": "http://x"})
    with pytest.raises(SettingsError, match="WAN22_LOG_FORMAT"):
        load(CommonSettings, {"WAN22_LOG_FORMAT": "xml"})


def test_models_config_adds_a_task_on_a_base_preset(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[tasks.demo]\nbase = "ti2v-5B"\nckpt_dir = "/m/demo"\nsizes = ["64*64"]\nframe_num = 5\n')
    config = load_models(str(path))
    demo = config.tasks["demo"]
    assert demo.ckpt_dir == "/m/demo" and demo.preset.sizes == ("64*64",) and demo.preset.frame_num == 5
    assert demo.preset.fps == 24 and "t2v-A14B" in config.tasks
    path.write_text('[tasks.bad]\nbase = "nope"\n')
    with pytest.raises(SettingsError, match=r"tasks\.bad"):
        load_models(str(path))
    path.write_text('[tasks.bad]\nbase = "ti2v-5B"\nframes = 5\n')
    with pytest.raises(SettingsError, match="frames"):
        load_models(str(path))


def test_models_config_sets_offload_and_negative_prompt_per_task(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[tasks.i2v-A14B]\nckpt_dir = "/m/i2v"\noffload = "experts"\nnegative_prompt = "blurry"\n')
    config = load_models(str(path))
    assert config.tasks["i2v-A14B"].offload == "experts"
    assert config.tasks["i2v-A14B"].preset.negative_prompt == "blurry"
    assert config.tasks["t2v-A14B"].offload == "none"
    assert config.tasks["t2v-A14B"].preset.negative_prompt == RELEASE_NEGATIVE_PROMPT
    path.write_text('[tasks.i2v-A14B]\noffload = "gpu"\n')
    with pytest.raises(SettingsError, match="offload"):
        load_models(str(path))


def test_models_config_block_offload_and_what_it_excludes(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[tasks.t2v-A14B]\noffload = "blocks"\noffload_prefetch = 2\n')
    task = load_models(str(path)).tasks["t2v-A14B"]
    assert (task.offload, task.offload_prefetch) == ("blocks", 2)
    for body, reason in [
        ('offload = "blocks"\nfp8 = true', "fp8"),
        ('offload = "blocks"\nfsdp = true\nworld_size = 2', "fsdp"),
        ('offload = "blocks"\noffload_prefetch = 9', "offload_prefetch"),
    ]:
        path.write_text(f"[tasks.t2v-A14B]\n{body}\n")
        with pytest.raises(SettingsError, match=reason):
            load_models(str(path))


def test_keys_are_prefixed():
    keys = Keys("blue")
    assert keys.jobs("t2v-A14B") == "blue:jobs:t2v-A14B"
    assert Keys().progress == "wan22-progress-stream"


@pytest.mark.parametrize("module", ["services.ingest.app", "services.notifier.service", "services.cli.main"])
def test_torch_free_services_import_without_torch_or_ray(module):
    code = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); "
        "bad = [m for m in ('torch', 'ray', 'diffusers') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
