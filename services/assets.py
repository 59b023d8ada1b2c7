"""A task's stored files (video, poster, spritesheet) read back and removed: by `/v1/videos`'
content and delete routes. The generator writes them (services/generator/storage.py) under the
same keys, `<prefix>/<task_id>/<file>`, in a local directory or an S3 bucket. Torch-free."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Asset:
    file: str
    media_type: str


# The content variants of `/v1/videos/{id}/content`, by the names the OpenAI API gives them.
ASSETS = {
    "video": Asset("video.mp4", "video/mp4"),
    "thumbnail": Asset("poster.jpg", "image/jpeg"),
    "spritesheet": Asset("spritesheet.jpg", "image/jpeg"),
}


def asset_key(task_id: str, file: str) -> str:
    return f"{task_id}/{file}"


class AssetStore(Protocol):
    async def size(self, key: str) -> int | None:
        """Bytes stored under `key`, None when there is nothing."""
        ...

    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start`..`end` (inclusive) of `key`, in chunks."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Remove `keys`; missing ones are fine."""
        ...


class LocalAssets:
    def __init__(self, directory: str) -> None:
        self.root = Path(directory).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"asset key {key!r} leaves the storage directory")
        return path

    async def size(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        async with await anyio.open_file(self._path(key), "rb") as file:
            await file.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = await file.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    async def delete(self, keys: list[str]) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            if path.parent != self.root and path.parent.is_dir() and not any(path.parent.iterdir()):
                path.parent.rmdir()


class S3Assets:
    """boto3 in worker threads; bytes stream through in chunks, so a large video is never held
    whole in ingest's memory."""

    def __init__(self, url: str, endpoint_url: str = "") -> None:
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url or None)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def size(self, key: str) -> int | None:
        def head() -> int | None:
            try:
                return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
            except self.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

        return await anyio.to_thread.run_sync(head)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        def get() -> Any:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end}")["Body"]

        body = await anyio.to_thread.run_sync(get)
        try:
            while chunk := await anyio.to_thread.run_sync(body.read, CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, keys: list[str]) -> None:
        objects = [{"Key": self._key(key)} for key in keys]
        await anyio.to_thread.run_sync(
            lambda: self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        )


def open_assets(storage: str, endpoint_url: str = "") -> AssetStore:
    return S3Assets(storage, endpoint_url) if storage.startswith("s3://") else LocalAssets(storage)
