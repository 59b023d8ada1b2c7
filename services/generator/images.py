"""Fetch a job's conditioning image: s3:// with boto3, https:// through the egress guard, data:
URLs decoded, local paths inside the input root. A bad image fails the job for good."""

from __future__ import annotations

import io
from typing import Any

import anyio

from services.consumer import Permanent
from services.egress import EgressRefused, FetchError, fetch_bytes, parse_networks
from services.inputs import BadImage, decode_data_url, resolve_local


class ImageLoader:
    def __init__(self, *, input_root: str, max_bytes: int, allow_networks: list[str], s3_endpoint_url: str = ""):
        self.input_root, self.max_bytes = input_root, max_bytes
        self.allow = parse_networks(allow_networks)
        self.s3_endpoint_url = s3_endpoint_url

    async def load(self, reference: str) -> Any:
        """A PIL RGB image; raises Permanent with the reason when it cannot be used."""
        try:
            data = await self._bytes(reference)
        except (BadImage, EgressRefused, FetchError) as exc:
            raise Permanent(f"image: {exc}") from None
        return _decode(data)

    async def _bytes(self, reference: str) -> bytes:
        if reference.startswith("data:"):
            return decode_data_url(reference, self.max_bytes)
        if reference.startswith("https://"):
            return await fetch_bytes(reference, self.allow, max_bytes=self.max_bytes, timeout=30.0)
        if reference.startswith("s3://"):
            return await anyio.to_thread.run_sync(self._s3, reference)
        path = resolve_local(reference, self.input_root, must_exist=True)
        if path.stat().st_size > self.max_bytes:
            raise BadImage(f"image file is larger than {self.max_bytes} bytes")
        return await anyio.Path(path).read_bytes()

    def _s3(self, reference: str) -> bytes:
        import boto3

        bucket, _, key = reference.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=self.s3_endpoint_url or None)
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except client.exceptions.ClientError as exc:
            raise BadImage(f"cannot read {reference}: {exc}") from None
        if head["ContentLength"] > self.max_bytes:
            raise BadImage(f"image is larger than {self.max_bytes} bytes")
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def _decode(data: bytes) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise Permanent(f"image: not a readable image ({exc})") from None
    return image.convert("RGB")
