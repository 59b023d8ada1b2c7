"""Where finished videos go: a local directory (file URLs) or S3 (boto3; multipart for large
files, content types, optional presigned GET URLs). Keys: `<prefix>/<task_id>/video.mp4`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Protocol

import anyio


class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store `data` under `key`; returns the URL events and the task hash carry."""
        ...


class LocalStorage:
    def __init__(self, directory: str) -> None:
        self.root = Path(directory).resolve()

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        path = self.root / key
        await anyio.to_thread.run_sync(_write_atomically, path, data)
        return path.as_uri()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(data)
    partial.replace(path)  # a reader never sees half a video


class S3Storage:
    def __init__(self, url: str, *, endpoint_url: str = "", presign_s: int = 0) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix, self.presign_s = bucket, prefix.strip("/"), presign_s
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None)
        self.transfer = TransferConfig(multipart_threshold=16 * 1024 * 1024, multipart_chunksize=16 * 1024 * 1024)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        full = self._key(key)
        await anyio.to_thread.run_sync(self._upload, full, data, content_type)
        if self.presign_s:
            params = {"Bucket": self.bucket, "Key": full}
            return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=self.presign_s))
        return f"s3://{self.bucket}/{full}"

    def _upload(self, key: str, data: bytes, content_type: str) -> None:
        self.client.upload_fileobj(
            io.BytesIO(data), self.bucket, key, ExtraArgs={"ContentType": content_type}, Config=self.transfer
        )


def open_storage(url: str, *, endpoint_url: str = "", presign_s: int = 0) -> Storage:
    if url.startswith("s3://"):
        return S3Storage(url, endpoint_url=endpoint_url, presign_s=presign_s)
    return LocalStorage(url)
