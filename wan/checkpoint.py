"""A diffusers-layout checkpoint as every rank of a gang sees it, read once per node.

The node's reader (`wan.readgroup`) lists the checkpoint, reads its small files (configs, the
tokenizer) and the safetensors headers, and shares them as one manifest; then, folder by folder,
it reads each weight file in chunks and broadcasts every chunk as it completes. The other ranks
only ever see the manifest and the broadcasts: they never open the checkpoint. A single process
is its own reader.

Layout errors are found by the reader and raised on every rank with the same message, before
any weight is read.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wan.job import ParallelContext
from wan.layout import ORIGINAL_MARKERS, LayoutError, OriginalLayoutError, require_diffusers_layout
from wan.readers import plan_chunks
from wan.readgroup import ABORT, ReaderFailed, ReadGroup, read_group
from wan.sinks import DtypeOf, HostSink, TensorSink, make_sink
from wan.sources import Source, is_s3, open_source
from wan.tensors import FileLayout, header_length, parse_layout

CHUNK_BYTES = 16 << 20
WEIGHT_NAMES = ("diffusion_pytorch_model", "model")  # diffusers' and transformers' file names
SMALL_FOLDERS = ("tokenizer",)  # copied whole: a tokenizer is a handful of small files
WEIGHT_FOLDERS = ("transformer", "transformer_2", "text_encoder", "vae")


@dataclass
class Manifest:
    name: str
    small: dict[str, bytes] = field(default_factory=dict)  # relative path -> contents
    weights: dict[str, list[tuple[str, FileLayout]]] = field(default_factory=dict)  # folder -> files


class Checkpoint:
    def __init__(self, manifest: Manifest, source: Source | None, group: ReadGroup, chunk_bytes: int) -> None:
        self.manifest, self.source, self.group, self.chunk_bytes = manifest, source, group, chunk_bytes
        self._pending: dict[str, Future[dict[str, torch.Tensor]]] = {}

    @property
    def name(self) -> str:
        return self.manifest.name

    def json(self, rel: str) -> dict[str, Any]:
        if rel not in self.manifest.small:
            raise LayoutError(f"{self.name}: no {rel}")
        return json.loads(self.manifest.small[rel])

    def prefetch(self, plan: dict[str, tuple[torch.device, DtypeOf]]) -> None:
        """Start moving these folders' weights, in this order, on a thread of their own, so the
        models are built while the bytes arrive. Every rank of the gang passes the same plan."""
        futures: dict[str, Future[dict[str, torch.Tensor]]] = {folder: Future() for folder in plan}
        self._pending = dict(futures)  # the caller takes its futures out of this one as it goes
        worker = threading.Thread(target=self._transfer_all, args=(plan, futures), name="ckpt-transfer", daemon=True)
        worker.start()

    def tensors(self, folder: str, device: torch.device, dtype_of: DtypeOf) -> dict[str, torch.Tensor]:
        """Every tensor of `folder`'s weights on `device`, in the dtype `dtype_of` picks. Collective."""
        if folder in self._pending:
            return self._pending.pop(folder).result()
        return self._transfer(folder, device, dtype_of)

    def _transfer_all(
        self, plan: dict[str, tuple[torch.device, DtypeOf]], futures: dict[str, Future[dict[str, torch.Tensor]]]
    ) -> None:
        try:
            for folder, (device, dtype_of) in plan.items():
                if device.type == "cuda" and device.index is not None:
                    torch.cuda.set_device(device)  # per thread: this one's current device
                state = self._transfer(folder, device, dtype_of)
                if device.type == "cuda":
                    torch.cuda.current_stream(device).synchronize()  # casts done before another thread uses them
                futures[folder].set_result(state)
        except BaseException as exc:
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)
        finally:
            if self.source is not None:
                self.source.close()

    def _transfer(self, folder: str, device: torch.device, dtype_of: DtypeOf) -> dict[str, torch.Tensor]:
        if folder not in self.manifest.weights:
            raise LayoutError(f"{self.name}/{folder}: no safetensors weights")
        state: dict[str, torch.Tensor] = {}
        for rel, layout in self.manifest.weights[folder]:
            chunks = plan_chunks(layout.size, self.chunk_bytes)
            sink = make_sink(layout, chunks, dtype_of, device)
            if self.group.is_reader:
                self._read(rel, chunks, sink)
            else:
                self._receive(rel, len(chunks), sink)
            state.update(sink.tensors())
        return state

    @contextlib.contextmanager
    def folder_dir(self, folder: str) -> Iterator[Path]:
        """`folder` as a local directory: the checkpoint's own, or a temporary copy of the manifest's."""
        local = self.source.local_dir(folder) if self.source is not None else None
        if local is not None:
            yield local
            return
        with tempfile.TemporaryDirectory(prefix="wan-ckpt-") as tmp:
            for rel, data in self.manifest.small.items():
                if rel.startswith(f"{folder}/"):
                    path = Path(tmp) / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
            yield Path(tmp) / folder

    def _read(self, rel: str, chunks: list[tuple[int, int]], sink: HostSink | TensorSink) -> None:
        assert self.source is not None
        group = self.group.group
        try:
            for i, data in self.source.stream(rel, chunks, sink.host_view):
                if group is None:
                    sink.put(i, data)
                    continue
                self.group.send_index(i)
                wire = sink.target(i, self.group.device)
                if wire.device != data.device or wire.data_ptr() != data.data_ptr():
                    wire.copy_(data)
                self.group.broadcast(wire)
                sink.put(i, wire if wire.device.type == _device_of(sink).type else data)
        except BaseException:
            if group is not None:
                with contextlib.suppress(Exception):
                    self.group.send_index(ABORT)
            raise

    def _receive(self, rel: str, count: int, sink: HostSink | TensorSink) -> None:
        for _ in range(count):
            i = self.group.send_index(0)  # the value sent is the reader's; ours is overwritten
            if i == ABORT:
                raise ReaderFailed(f"rank {self.group.leader}, which reads {self.name} for this node, failed on {rel}")
            wire = sink.target(i, self.group.device)
            self.group.broadcast(wire)
            sink.put(i, wire)


def _device_of(sink: HostSink | TensorSink) -> torch.device:
    return sink.device if isinstance(sink, TensorSink) else torch.device("cpu")


def open_checkpoint(
    ckpt_dir: str | Path, parallel: ParallelContext | None = None, *, chunk_bytes: int = CHUNK_BYTES
) -> Checkpoint:
    """Collective over the gang: the reader builds the manifest, every rank gets it (or its error)."""
    group = read_group(parallel or ParallelContext())
    source: Source | None = None
    found: Manifest | Exception | None = None
    if group.is_reader:
        try:
            source = open_source(ckpt_dir)
            found = build_manifest(ckpt_dir, source)
        except Exception as exc:  # every rank must hear of it, or they wait for a manifest forever
            found = exc
    shared = group.share(found if isinstance(found, Manifest) else _error(found))
    if isinstance(found, Exception):
        raise found
    if isinstance(shared, tuple):
        layout, message = shared
        raise LayoutError(message) if layout else ReaderFailed(message)
    assert isinstance(shared, Manifest)
    return Checkpoint(shared, source, group, chunk_bytes)


def _error(exc: Exception | None) -> tuple[bool, str]:
    """What the other ranks raise: a layout error as it is, anything else as the reader's failure."""
    if isinstance(exc, LayoutError):
        return True, str(exc)
    return False, f"the rank reading the checkpoint failed: {type(exc).__name__}: {exc}"


def build_manifest(ckpt_dir: str | Path, source: Source) -> Manifest:
    files = _checked_files(ckpt_dir, source)
    manifest = Manifest(name=str(ckpt_dir))
    for rel in files:
        top = rel.split("/")[0]
        if rel == "model_index.json" or top in SMALL_FOLDERS or _is_config(rel):
            manifest.small[rel] = source.read(rel)
    for folder in WEIGHT_FOLDERS:
        names = _weight_files(folder, files, manifest.small)
        if names:
            manifest.weights[folder] = [(rel, _layout(source, rel, files[rel])) for rel in names]
    return manifest


def _checked_files(ckpt_dir: str | Path, source: Source) -> dict[str, int]:
    if not is_s3(ckpt_dir):
        require_diffusers_layout(ckpt_dir)  # its messages for a missing, original or unknown layout
        return source.files()
    files = source.files()
    if any(rel.split("/")[0] in ORIGINAL_MARKERS for rel in files):
        raise OriginalLayoutError(ckpt_dir)
    if "model_index.json" not in files or not any(rel.startswith("transformer/") for rel in files):
        raise LayoutError(f"{ckpt_dir} is not a Wan2.2 checkpoint: expected model_index.json and transformer/")
    return files


def _is_config(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) == 2 and (parts[1].endswith(".json") and parts[0] in (*WEIGHT_FOLDERS, "scheduler"))


def _weight_files(folder: str, files: dict[str, int], small: dict[str, bytes]) -> list[str]:
    """The safetensors files of one model folder: a single file, or the shards its index names."""
    for stem in WEIGHT_NAMES:
        if f"{folder}/{stem}.safetensors" in files:
            return [f"{folder}/{stem}.safetensors"]
        index = f"{folder}/{stem}.safetensors.index.json"
        if index in small:
            names = sorted(set(json.loads(small[index])["weight_map"].values()))
            missing = [name for name in names if f"{folder}/{name}" not in files]
            if missing:
                raise LayoutError(f"{folder}: shards named by {index} are missing: {missing[:3]}")
            return [f"{folder}/{name}" for name in names]
    return []


def _layout(source: Source, rel: str, size: int) -> FileLayout:
    length = header_length(source.head(rel, 8), rel)
    return parse_layout(source.head(rel, 8 + length), size, rel)
