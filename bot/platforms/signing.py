"""Signature primitives shared by the adapters (constant-time comparisons only)."""

from __future__ import annotations

import base64
import hmac


def hmac_sha256(secret: str, data: bytes) -> bytes:
    # hmac.digest is the one-shot C path: several times faster than hmac.new(...).digest().
    return hmac.digest(secret.encode(), data, "sha256")


def hmac_sha256_hex(secret: str, data: bytes) -> str:
    return hmac_sha256(secret, data).hex()


def hmac_sha256_b64(secret: str, data: bytes) -> str:
    return base64.b64encode(hmac_sha256(secret, data)).decode()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
