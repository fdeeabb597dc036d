"""Signature primitives shared by the adapters (constant-time comparisons only)."""

from __future__ import annotations

import base64
import hmac
import re

# What a handshake (X's CRC, the generic challenge) may sign: its answer is the HMAC of
# the token, the very signature a webhook body with those bytes gets, so a token that
# could be a body (a JSON object needs "{") would sign a forged event for its sender.
HANDSHAKE_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,256}")
HANDSHAKE_TOKEN_RULE = "1-256 letters, digits or ._~+/=-"


def hmac_sha256(secret: str, data: bytes) -> bytes:
    # hmac.digest is the one-shot C path: several times faster than hmac.new(...).digest().
    return hmac.digest(secret.encode(), data, "sha256")


def hmac_sha256_hex(secret: str, data: bytes) -> str:
    return hmac_sha256(secret, data).hex()


def hmac_sha256_b64(secret: str, data: bytes) -> str:
    return base64.b64encode(hmac_sha256(secret, data)).decode()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
