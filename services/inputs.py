"""Where a conditioning image may come from. The request never chooses files freely: an `s3://`
or `https://` URL, a `data:` URL within a size limit, or a path inside the configured input root
(no `..`, no symlink escape). Ingest checks the reference; the generator checks it again when it
reads it."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path


class BadImage(ValueError):
    """The image reference is not allowed or not readable; the message says why."""


IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"RIFF", b"GIF8")


def check_reference(image: str, *, input_root: str, max_bytes: int) -> str:
    """The canonical form of an allowed image reference; raises BadImage."""
    if image.startswith("s3://"):
        bucket, _, key = image[5:].partition("/")
        if not bucket or not key:
            raise BadImage("s3 URL must be s3://bucket/key")
        return image
    if image.startswith("https://"):
        return image
    if image.startswith("http://"):
        raise BadImage("http:// images are refused: use https://, s3:// or a data: URL")
    if image.startswith("data:"):
        decode_data_url(image, max_bytes)
        return image
    if "://" in image:
        raise BadImage(f"unsupported scheme {image.split('://')[0]!r}: use s3://, https://, data: or a local path")
    return str(resolve_local(image, input_root))


def decode_data_url(url: str, max_bytes: int) -> bytes:
    header, sep, body = url.partition(",")
    if not sep or not header.startswith("data:image/") or not header.endswith(";base64"):
        raise BadImage("data URL must be data:image/<type>;base64,<data>")
    if len(body) * 3 // 4 > max_bytes:
        raise BadImage(f"data URL image is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("data URL is not valid base64") from None
    if not data.startswith(IMAGE_MAGIC):
        raise BadImage("data URL does not hold a PNG, JPEG, WebP or GIF image")
    return data


def resolve_local(path: str, input_root: str, *, must_exist: bool = False) -> Path:
    """`path` (absolute, or relative to the root) resolved with symlinks; it must stay inside
    `input_root`."""
    if not input_root:
        raise BadImage("local image paths are disabled (no WAN22_INPUT_ROOT configured)")
    if ".." in Path(path).parts:
        raise BadImage("image path must not contain '..'")
    root = Path(os.path.realpath(input_root))
    candidate = Path(path) if os.path.isabs(path) else Path(input_root) / path
    resolved = Path(os.path.realpath(candidate))
    if not resolved.is_relative_to(root):
        raise BadImage(f"image path is outside the input root {input_root}")
    if must_exist and not resolved.is_file():
        raise BadImage(f"image file {path} does not exist")
    return resolved
