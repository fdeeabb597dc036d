"""The contract every platform adapter fulfils.

An adapter is one small class per platform and account. It knows the platform's wire
format and nothing about the web layer: ingest hands it headers, query and the raw body,
and turns its answers into HTTP responses; the sender hands it an OutboundReply and an
HTTP client session.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

import aiohttp

from bot.config import AccountConfig
from bot.models import InboundEvent, OutboundReply
from bot.nlu.lang import clean_text
from bot.redis import Keys, Redis


class SignatureError(Exception):
    """The request is not signed by the platform (→ 401, nothing stored)."""


class PayloadError(Exception):
    """The body is not a payload this platform sends (→ 400, nothing stored)."""


def _not_json_number(literal: str) -> NoReturn:
    raise PayloadError(f"{literal} is not a JSON number")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e400: an overflow Python reads as infinity
        _not_json_number(literal)
    return value


def json_object(body: bytes) -> dict[str, Any]:
    """A webhook body that must be one JSON object, or the PayloadError saying why not.
    Lone surrogates in its strings become U+FFFD: storing them would fail, and the 503
    would make the platform resend the event forever. NaN and infinities (which Python
    reads, though JSON has none) are refused: a NaN time would reach the ticket's
    messages, whose JSON no browser can parse."""
    try:
        data = json.loads(body, parse_constant=_not_json_number, parse_float=_finite)
    except ValueError as e:  # not JSON, not UTF-8, or an integer too long to convert
        raise PayloadError("body is not JSON") from e
    except RecursionError as e:
        raise PayloadError("body is nested too deeply") from e
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    if b"\\u" in body:  # only an escape makes a surrogate
        try:
            data = without_lone_surrogates(data)
        except RecursionError as e:
            raise PayloadError("body is nested too deeply") from e
    return data


def without_lone_surrogates(value: Any) -> Any:
    """``value`` (parsed JSON) with U+FFFD for every unpaired surrogate in its strings:
    what a JSON "\\ud83d" escape leaves of a broken emoji (a pair decodes to the emoji
    itself), valid JSON that no UTF-8 can carry."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {without_lone_surrogates(k): without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_lone_surrogates(v) for v in value]
    return value


class HandshakeError(Exception):
    """A GET that is not a valid handshake (→ 400, or 401 when a signature is wrong)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class SendError(Exception):
    """Delivery failed.

    ``permanent`` errors (4xx other than 429) are not retried: the reply goes to the
    dead stream with the platform's message. Others are retried with backoff, waiting at
    least ``retry_after`` seconds when the platform said so. A ``maybe_posted`` answer
    (a gateway timeout) says nothing of whether the request was carried out: like a
    connection lost after the request left, it is retried only where a resend is
    idempotent.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        permanent: bool = False,
        retry_after: float | None = None,
        maybe_posted: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent
        self.retry_after = retry_after
        self.maybe_posted = maybe_posted


@dataclass(frozen=True)
class HttpReply:
    """What ingest answers the platform: status, body and content type."""

    status: int = 200
    body: bytes = b'{"ok":true}'
    content_type: str = "application/json"


@dataclass
class SendResult:
    """The platform's id for what was posted, and its rate-limit headers if any."""

    platform_id: str
    rate_limit: Mapping[str, str] = field(default_factory=dict)


class PlatformAdapter:
    name: ClassVar[str] = ""

    def __init__(self, account: AccountConfig) -> None:
        self.account = account

    # -- inbound ---------------------------------------------------------------
    def handshake(self, query: Mapping[str, str]) -> HttpReply:
        raise HandshakeError("this platform has no GET handshake", status=405)

    def verify(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes) -> None:
        """Raise SignatureError unless the request is the platform's. Fails closed."""
        raise NotImplementedError

    async def check_replay(
        self, redis: Redis, keys: Keys, query: Mapping[str, str], body: bytes
    ) -> None:
        """After :meth:`verify`: raise SignatureError if the request replays a signature
        seen before (it needs Redis, hence apart from verify). Nothing to do where the
        signature covers the body: a replay is then the same event, and dedupe drops it."""

    def parse(self, body: bytes) -> list[InboundEvent]:
        """Raw body → normalized events, own posts and unknown types already dropped."""
        raise NotImplementedError

    def accepted(self) -> HttpReply:
        """The answer once the events are stored."""
        return HttpReply()

    # -- outbound --------------------------------------------------------------
    def fit(self, text: str, kind: str) -> str:
        """``text`` shortened to the platform's limit for ``kind`` (mention or dm)."""
        return text

    async def send(self, http: aiohttp.ClientSession, reply: OutboundReply) -> SendResult:
        raise NotImplementedError
