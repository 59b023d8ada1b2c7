"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

`webhook-signature` is `v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`;
with several secrets (during a rotation) the header carries one signature per secret, separated by
spaces, and a receiver accepts the message when any of them verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as random_secrets
from functools import lru_cache

PREFIX = "whsec_"
SECRET_BYTES = 24


def generate_secret() -> str:
    return PREFIX + base64.b64encode(random_secrets.token_bytes(SECRET_BYTES)).decode()


@lru_cache(maxsize=1024)
def parse_secret(secret: str) -> bytes:
    """`whsec_<base64>` → key bytes; raises ValueError for anything else."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX) :] + "==", validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if len(key) < 16:
        raise ValueError("a webhook secret needs at least 16 bytes of key")
    return key


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def sign_headers(webhook_id: str, timestamp: int, body: bytes, secrets: list[str]) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    signatures = " ".join(signature(parse_secret(s), webhook_id, timestamp, body) for s in secrets)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signatures}
