"""The checkpoint reader: bit-for-bit against safetensors and the libraries' own loaders, one read per
gang (rank 1 is handed paths that do not exist), and a checkpoint streamed from S3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.wan.load_worker import TASK, state_digest
from tests.wan.support import tiny_input, tiny_preset
from wan.readers import ALIGN, LocalFile, aligned_empty, plan_chunks
from wan.readgroup import node_groups
from wan.sinks import HostSink, TensorSink
from wan.sources import LocalSource
from wan.tensors import byte_view, parse_layout

WORKER = str(Path(__file__).with_name("load_worker.py")) + ":run"


def mixed_tensors() -> dict[str, torch.Tensor]:
    """Every dtype the reader knows, a scalar, an empty tensor, and an odd-length uint8 tensor first
    so the tensors after it are misaligned in the file."""
    gen = torch.Generator().manual_seed(3)
    floats = torch.randn(3000, generator=gen)
    return {
        "a_odd": torch.arange(7, dtype=torch.uint8),
        "b_f32": torch.randn(37, 129, generator=gen),
        "c_bf16": floats.to(torch.bfloat16),
        "d_f16": floats[:999].to(torch.float16),
        "e_f64": floats[:17].to(torch.float64),
        "f_i64": torch.arange(-50, 50, dtype=torch.int64),
        "g_i32": torch.arange(11, dtype=torch.int32),
        "h_i16": torch.arange(5, dtype=torch.int16),
        "i_i8": torch.arange(-3, 3, dtype=torch.int8),
        "j_bool": torch.tensor([True, False, True]),
        "k_f8": floats[:64].to(torch.float8_e4m3fn),
        "l_scalar": torch.tensor(2.5),
        "m_empty": torch.zeros(0, 4),
    }


def read_with(path: Path, sink_kind: str, chunk_bytes: int, dtype_of=lambda _, d: d) -> dict[str, torch.Tensor]:
    """One file through the loader's own reader and sink, as the node's reader does it."""
    source = LocalSource(path.parent)
    head = source.head(path.name, 1 << 20)
    layout = parse_layout(head, path.stat().st_size, path.name)
    chunks = plan_chunks(layout.size, chunk_bytes)
    cpu = torch.device("cpu")
    sink = HostSink(layout, chunks, dtype_of) if sink_kind == "host" else TensorSink(layout, chunks, dtype_of, cpu)
    for i, data in source.stream(path.name, chunks, sink.host_view):
        sink.put(i, data)
    return sink.tensors()


@pytest.mark.parametrize("chunk_bytes", [ALIGN, 64 << 20])
@pytest.mark.parametrize("sink_kind", ["host", "tensor"])
def test_reader_equals_safetensors_bit_for_bit(tmp_path: Path, sink_kind: str, chunk_bytes: int) -> None:
    path = tmp_path / "mixed.safetensors"
    save_file(mixed_tensors(), path)
    expected = load_file(path)
    got = read_with(path, sink_kind, chunk_bytes)
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(byte_view(got[name]), byte_view(tensor)), name  # NaN-proof, -0.0 too
    if sink_kind == "host" and chunk_bytes == ALIGN:
        assert len(plan_chunks(path.stat().st_size, chunk_bytes)) >= 7  # b_f32 alone spans 5 chunks


@pytest.mark.parametrize("sink_kind", ["host", "tensor"])
def test_cast_to_the_kept_dtype_is_the_cast_of_the_stored_tensor(tmp_path: Path, sink_kind: str) -> None:
    path = tmp_path / "mixed.safetensors"
    save_file(mixed_tensors(), path)
    expected = load_file(path)
    halve = lambda name, dtype: torch.bfloat16 if dtype == torch.float32 else dtype  # noqa: E731
    got = read_with(path, sink_kind, ALIGN, halve)
    assert torch.equal(got["b_f32"], expected["b_f32"].to(torch.bfloat16))
    assert torch.equal(got["c_bf16"], expected["c_bf16"]) and got["f_i64"].dtype == torch.int64


def test_direct_and_buffered_reads_give_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    data = np.random.default_rng(0).integers(0, 256, 3 * ALIGN + 123, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    with LocalFile(path) as file:
        assert file.direct_fd is not None  # this filesystem takes O_DIRECT, so the aligned read used it
        aligned = aligned_empty(4 * ALIGN)
        file.read_into(aligned, 0, len(data))
        unaligned = aligned_empty(len(data) + 1)[1:]  # O_DIRECT cannot read here: the page cache path
        file.read_into(unaligned, 0, len(data))
    assert bytes(aligned[: len(data)].numpy()) == data == bytes(unaligned.numpy())


def test_node_groups_one_reader_per_host() -> None:
    assert node_groups(["a", "a", "b", "a", "b"]) == [[0, 1, 3], [2, 4]]
    assert node_groups(["n"] * 4) == [[0, 1, 2, 3]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_components_equal_the_libraries_own_loaders(tiny_root: Path, dtype: torch.dtype) -> None:
    """Against diffusers' and transformers' `from_pretrained` of the same folders, bit for bit (and
    dtype for dtype: the fp32 modules each library keeps)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    from wan.checkpoint import open_checkpoint
    from wan.loader import load_components

    cpu = torch.device("cpu")
    ckpt = open_checkpoint(tiny_root / TASK, chunk_bytes=ALIGN)
    comps = load_components(
        ckpt, dtype=dtype, transformer_device=cpu, text_encoder_device=cpu, vae_device=cpu, vae_dtype=dtype
    )
    root = tiny_root / TASK
    references = {
        "transformer": WanTransformer3DModel.from_pretrained(root / "transformer", torch_dtype=dtype),
        "transformer_2": WanTransformer3DModel.from_pretrained(root / "transformer_2", torch_dtype=dtype),
        "text_encoder": UMT5EncoderModel.from_pretrained(root / "text_encoder", dtype=dtype),
        "vae": AutoencoderKLWan.from_pretrained(root / "vae", torch_dtype=dtype),
    }
    for name, reference in references.items():
        ours, theirs = getattr(comps, name).state_dict(), reference.state_dict()
        assert ours.keys() == theirs.keys(), name
        for key, tensor in theirs.items():
            assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), f"{name}.{key}"
    if dtype == torch.bfloat16:  # the cast rule did something: diffusers keeps some modules in fp32
        assert {t.dtype for t in comps.transformer.parameters()} == {torch.bfloat16, torch.float32}


@pytest.fixture(scope="module")
def s3_ckpt(tiny_root: Path):
    from tests.s3_server import S3Server

    server = S3Server().start()
    client = server.client()
    client.create_bucket(Bucket="models")
    for path in sorted((tiny_root / TASK).rglob("*")):
        if path.is_file():
            client.upload_file(str(path), "models", f"wan/{TASK}/{path.relative_to(tiny_root / TASK).as_posix()}")
    yield server, f"s3://models/wan/{TASK}"
    server.stop()


def test_s3_checkpoint_streams_and_generates_the_local_frames(
    s3_ckpt, tiny_models: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wan.model import WanModel

    server, url = s3_ckpt
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    model = WanModel.load(url, tiny_preset(TASK))
    local = tiny_models[TASK]
    assert state_digest(model) == state_digest(local)
    np.testing.assert_array_equal(model.generate(tiny_input(TASK)), local.generate(tiny_input(TASK)))


def test_s3_prefix_without_a_checkpoint_is_a_layout_error(s3_ckpt, monkeypatch: pytest.MonkeyPatch) -> None:
    from wan.layout import LayoutError
    from wan.model import WanModel

    server, _ = s3_ckpt
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    with pytest.raises(LayoutError, match=r"s3://models/elsewhere is not a Wan2\.2 checkpoint"):
        WanModel.load("s3://models/elsewhere", tiny_preset(TASK))


@pytest.fixture(scope="module")
def wide_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with wide FFNs: 26 MB of weights, so a whole extra read stands out of whatever
    else a busy host makes a process read (pages of its libraries evicted and faulted back in)."""
    from wan.tiny import TransformerDims, make_tiny

    return make_tiny(tmp_path_factory.mktemp("wide") / TASK, TASK, dims=TransformerDims(ffn_dim=32768))


@pytest.fixture(scope="module")
def gang(tiny_root: Path, wide_ckpt: Path, s3_ckpt, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wan.distributed import spawn_local

    server, url = s3_ckpt
    out = tmp_path_factory.mktemp("gang-load")
    doomed = out / "doomed"  # rank 0 deletes a weight file of this copy after reading the manifest
    shutil.copytree(tiny_root / TASK, doomed)
    payload = {"ckpt": str(wide_ckpt), "missing": str(out / "not-here"), "s3": url, "out": str(out)}
    payload["doomed"] = str(doomed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", server.url)  # the ranks inherit this process's environment
        spawn_local(WORKER, 2, payload, timeout_s=300)
    return out


def _seen(out: Path, name: str) -> list[dict]:
    return [json.loads((out / f"{name}.rank{rank}.json").read_text()) for rank in range(2)]


def _weight_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.safetensors"))


def test_gang_of_two_reads_one_copy_and_rank1_gets_every_byte(gang: Path, wide_ckpt: Path) -> None:
    from wan.model import WanModel

    local = WanModel.load(wide_ckpt, tiny_preset(TASK))
    reader, receiver = _seen(gang, "local")
    assert reader["digest"] == receiver["digest"] == state_digest(local)
    weights = _weight_bytes(wide_ckpt)
    # From a dropped page cache: rank 0 read the weights once (not twice), rank 1 not at all.
    assert weights <= reader["read_bytes"] < 1.5 * weights, (reader, weights)
    assert receiver["read_bytes"] < 0.5 * weights, (receiver, weights)
    reference = local.generate(tiny_input(TASK))
    np.testing.assert_allclose(np.load(gang / "local.npy"), reference, rtol=0, atol=1e-5)


def test_gang_of_two_streams_s3_through_rank0(gang: Path, tiny_models: dict) -> None:
    assert [seen["digest"] for seen in _seen(gang, "s3")] == [state_digest(tiny_models[TASK])] * 2


def test_gang_reader_layout_error_is_raised_on_every_rank(gang: Path) -> None:
    errors = [seen["error"] for seen in _seen(gang, "error")]
    assert errors[0] is not None and errors[0].startswith("LayoutError: checkpoint directory")
    assert errors[0].endswith("not-here does not exist") and errors[1] == errors[0]


def test_gang_reader_failing_mid_load_fails_every_rank(gang: Path) -> None:
    reader, receiver = (seen["error"] for seen in _seen(gang, "abort"))
    assert reader.startswith("FileNotFoundError") and "vae/diffusion_pytorch_model.safetensors" in reader
    assert receiver.startswith("ReaderFailed: rank 0, which reads") and receiver.endswith(
        "failed on vae/diffusion_pytorch_model.safetensors"
    )
