"""Where a checkpoint's files come from: a local directory, or an S3 prefix (`s3://bucket/prefix`).

Both answer the same questions: which files are there and how big, the bytes of a small file, the
first bytes of a large one (a safetensors header), and the chunks of a large one as they arrive.
Weights in S3 are streamed with Run:ai Model Streamer (`runai-model-streamer[s3]`, the loader of
vLLM and SGLang): its C++ workers issue ranged GETs in parallel into a ring of buffers, and each
chunk is copied to its place as it lands. Nothing is written to a volume. The endpoint, region and
credentials are boto3's and the AWS SDK's usual ones (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import torch

from wan.readers import Chunk, Dest, LocalFile, reader_pool, stream_chunks


class Source(Protocol):
    name: str

    def files(self) -> dict[str, int]: ...  # relative path ("vae/config.json") -> size in bytes

    def read(self, rel: str) -> bytes: ...

    def head(self, rel: str, n: int) -> bytes: ...  # the first n bytes (fewer if the file is shorter)

    def stream(self, rel: str, chunks: list[Chunk], dest: Dest) -> Iterator[tuple[int, torch.Tensor]]: ...

    def local_dir(self, rel: str) -> Path | None: ...  # a folder as a local directory, if it is one

    def close(self) -> None: ...


def is_s3(ckpt_dir: str | Path) -> bool:
    return str(ckpt_dir).startswith("s3://")


def open_source(ckpt_dir: str | Path) -> Source:
    return S3Source(str(ckpt_dir)) if is_s3(ckpt_dir) else LocalSource(Path(ckpt_dir))


class LocalSource:
    def __init__(self, root: Path) -> None:
        self.root, self.name = root, str(root)
        self._pool: ThreadPoolExecutor | None = None  # one for every file: starting threads is not free

    def files(self) -> dict[str, int]:
        out = {}
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = Path(folder) / name
                out[path.relative_to(self.root).as_posix()] = path.stat().st_size
        return out

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def head(self, rel: str, n: int) -> bytes:
        with open(self.root / rel, "rb") as f:
            return f.read(n)

    def stream(self, rel: str, chunks: list[Chunk], dest: Dest) -> Iterator[tuple[int, torch.Tensor]]:
        self._pool = self._pool or reader_pool()
        with LocalFile(self.root / rel) as file:
            yield from stream_chunks(file.read_into, chunks, dest, self._pool)

    def local_dir(self, rel: str) -> Path | None:
        return self.root / rel

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class S3Source:
    def __init__(self, url: str) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"{url}: expected s3://bucket/prefix")
        self.name, self.bucket, self.prefix = url, bucket, prefix.strip("/")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")  # AWS_ENDPOINT_URL and the credential chain apply
        return self._client

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def files(self) -> dict[str, int]:
        start = f"{self.prefix}/" if self.prefix else ""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                out[item["Key"][len(start) :]] = int(item["Size"])
        return out

    def read(self, rel: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.key(rel))["Body"].read()

    def head(self, rel: str, n: int) -> bytes:
        reply = self.client.get_object(Bucket=self.bucket, Key=self.key(rel), Range=f"bytes=0-{n - 1}")
        return reply["Body"].read()

    def stream(self, rel: str, chunks: list[Chunk], dest: Dest) -> Iterator[tuple[int, torch.Tensor]]:
        from runai_model_streamer import FileChunks, FileStreamer

        url = f"s3://{self.bucket}/{self.key(rel)}"
        request = FileChunks(0, url, [offset for offset, _ in chunks], [length for _, length in chunks])
        with FileStreamer() as streamer:
            streamer.stream_files([request], device="cpu")
            for _, i, ring in streamer.get_chunks():
                data = ring.view(-1)  # a slot of the streamer's ring, reused once we ask for the next
                place = dest(i)
                if place is None:
                    yield i, data
                else:
                    place = place[: chunks[i][1]]
                    place.copy_(data)
                    yield i, place

    def local_dir(self, rel: str) -> Path | None:
        return None

    def close(self) -> None:
        pass
