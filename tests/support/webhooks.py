"""Build signed generic webhook requests the way an integrator would."""

from __future__ import annotations

import json
import time
from typing import Any

from bot.platforms.generic import SIGNATURE_HEADER, sign


def generic_event(
    event_id: str,
    text: str = "hello",
    *,
    kind: str = "dm",
    author_id: str = "42",
    handle: str = "alice",
    thread_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "type": kind,
        "id": event_id,
        "author": {"id": author_id, "handle": handle, "followers": 10, "verified": False},
        "text": text,
        "created_at": time.time(),
    }
    if thread_id:
        ev["thread_id"] = thread_id
    ev.update(extra)
    return ev


def signed(secret: str, payload: Any) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return body, {SIGNATURE_HEADER: sign(secret, body), "Content-Type": "application/json"}
