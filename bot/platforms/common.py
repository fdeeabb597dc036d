"""What the X, Weibo and Mastodon adapters share: API base, length rule, rate limits,
and turning an HTTP answer into a result or a :class:`SendError`."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp

from bot import textfit
from bot.config import AccountConfig, ConfigError
from bot.models import OutboundReply
from bot.platforms.base import PlatformAdapter, SendError
from bot.ratelimit import Limit, apply_overrides, retry_after

# Response headers worth keeping with a result (rate-limit bookkeeping).
_RATE_HEADERS = (
    "x-rate-limit-limit",
    "x-rate-limit-remaining",
    "x-rate-limit-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
)


class ApiAdapter(PlatformAdapter):
    """An adapter that posts to a real platform API."""

    default_api_base: ClassVar[str] = ""
    # True when the platform dedupes a resent request itself (Mastodon's
    # Idempotency-Key); otherwise a send whose outcome is unknown is never repeated.
    idempotent_resend: ClassVar[bool] = False
    # Secrets an account of this platform must have (checked at start-up).
    required_secrets: ClassVar[tuple[str, ...]] = ()

    def __init__(self, account: AccountConfig) -> None:
        super().__init__(account)
        base = account.api_base or self.default_api_base
        if not base:
            raise ConfigError(f"accounts[{account.id}].api_base: required for {self.name} accounts")
        self.api_base = base.rstrip("/")
        for name in self.required_secrets:
            account.secret(name)  # ConfigError naming the key when missing
        self.rule = textfit.rule(self.name)

    # -- outbound helpers ------------------------------------------------------
    def endpoint(self, reply: OutboundReply) -> str:
        """Rate-limit bucket name of the API call that delivers ``reply``."""
        raise NotImplementedError

    def default_limits(self, reply: OutboundReply) -> list[Limit]:
        return []

    def limits_for(self, reply: OutboundReply) -> list[Limit]:
        return apply_overrides(self.default_limits(reply), self.account.options)

    def limit(self, kind: str) -> int:
        return self.rule.limit(kind)

    def fit(self, text: str, kind: str) -> str:
        limit = self.limit(kind)
        return textfit.fit(
            text,
            lambda s: textfit.count(s, self.rule) <= limit,
            language=self.account.language,
            kind=kind,
            more=self.account.options.get("more_link") or None,
        )

    def compose(self, reply: OutboundReply) -> str:
        """The exact text that will be posted for ``reply`` (fitted to the limit)."""
        return self.fit(reply.text, reply.kind)

    async def ready(self, http: aiohttp.ClientSession) -> None:
        """One-time preparation before the first send (e.g. reading instance limits)."""


def rate_headers(headers: Mapping[str, str]) -> dict[str, str]:
    low = {k.lower(): v for k, v in headers.items()}
    return {k: low[k] for k in _RATE_HEADERS if k in low}


async def read_json(resp: aiohttp.ClientResponse, platform: str) -> Any:
    """The body as JSON, or a SendError that carries the platform's own error text."""
    text = await resp.text()
    if resp.status >= 400:
        raise http_error(resp.status, resp.headers, text)
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"_text": text[:200]}


# The fields in which platforms state what went wrong. Nothing else of an error body is
# kept: X's ``parameters``/``value``, a proxy's HTML page or a receiver that answers with
# the request can echo the reply text, and this message goes to the dead stream, which
# `replydesk dead list` prints.
_ERROR_FIELDS = ("title", "detail", "error", "error_description", "error_code")


def _scalar(v: Any) -> str:
    return str(v) if isinstance(v, str | int | float) and not isinstance(v, bool) else ""


def error_text(body: str) -> str:
    """The platform's message: X ``detail``/``errors``, Weibo ``error``, Mastodon ``error``."""
    try:
        d = json.loads(body)
    except (json.JSONDecodeError, ValueError):
        return f"non-JSON body of {len(body)} characters"
    parts: list[str] = []
    if isinstance(d, dict):
        for k in _ERROR_FIELDS:
            if v := _scalar(d.get(k)):
                parts.append(f"{k}={v}")
        errs = d.get("errors")
        for e in errs[:3] if isinstance(errs, list) else []:
            if isinstance(e, dict) and (m := _scalar(e.get("message") or e.get("detail"))):
                parts.append(m)
    return "; ".join(parts)[:500] or f"no error message in a body of {len(body)} characters"


# A proxy in front of the platform gave up waiting after passing the request on: the
# platform may still carry it out (the same as a read timeout on our side).
MAYBE_POSTED_STATUSES = frozenset({504})


def http_error(status: int, headers: Mapping[str, str], body: str) -> SendError:
    msg = f"HTTP {status}: {error_text(body)}"
    if status == 429 or status >= 500:
        wait = retry_after(headers, time.time(), rate_refused=status == 429)
        return SendError(
            msg, status=status, retry_after=wait, maybe_posted=status in MAYBE_POSTED_STATUSES
        )
    return SendError(msg, status=status, permanent=True)
