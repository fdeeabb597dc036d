"""OAuth 1.0a request signing (RFC 5849, HMAC-SHA1), as X accepts for user-context calls.

X user tokens from OAuth 1.0a do not expire, unlike OAuth 2.0 user tokens (2 h), which
suits a long-running bot. JSON bodies are not part of the signature; query parameters are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from urllib.parse import quote


def pct(s: str) -> str:
    """RFC 3986 percent-encoding: everything but unreserved characters."""
    return quote(s, safe="~-._")


def signature(
    method: str, url: str, params: Mapping[str, str], consumer_secret: str, token_secret: str
) -> str:
    """base64(HMAC-SHA1(consumer_secret&token_secret, METHOD&url&sorted params))."""
    pairs = sorted((pct(k), pct(v)) for k, v in params.items())
    param_str = "&".join(f"{k}={v}" for k, v in pairs)
    base = "&".join((method.upper(), pct(url), pct(param_str)))
    key = f"{pct(consumer_secret)}&{pct(token_secret)}"
    return base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()).decode()


def authorization(
    method: str,
    url: str,
    *,
    consumer_key: str,
    consumer_secret: str,
    token: str,
    token_secret: str,
    query: Mapping[str, str] | None = None,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> str:
    """The ``Authorization: OAuth …`` header value for one request (``url`` without query)."""
    oauth = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "oauth_token": token,
        "oauth_version": "1.0",
    }
    oauth["oauth_signature"] = signature(
        method, url, {**(query or {}), **oauth}, consumer_secret, token_secret
    )
    return "OAuth " + ", ".join(f'{pct(k)}="{pct(v)}"' for k, v in sorted(oauth.items()))


def parse_header(value: str) -> dict[str, str]:
    """``OAuth k="v", …`` → {k: v} (decoded); {} when it is not an OAuth header."""
    from urllib.parse import unquote

    if not value.startswith("OAuth "):
        return {}
    out = {}
    for part in value[6:].split(","):
        k, _, v = part.strip().partition("=")
        out[unquote(k)] = unquote(v.strip('"'))
    return out
