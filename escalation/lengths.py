"""How long an agent's reply may be: the console's counter and the API's check.

Both count what the sender will post, with ``bot.textfit``'s counting and the account's
limit. The Mastodon sender (``MastodonAdapter.compose``) puts ``@handle `` before the
text (a direct post reaches only the accounts it mentions) and fits the text into what
is left, so that prefix counts too; elsewhere the text is posted as written. A reply
over the limit would be cut by the sender, so the API refuses it (422 ``too_long``).

A Mastodon account's limit is the configured ``max_characters``, else the instance's,
else 500; a link counts the instance's ``characters_reserved_per_url``, else 23. The
processes that talk to the instance (the sender; the streaming client, if on) read
them (``MastodonAdapter.ready``) and record them in Redis; :func:`load_instance_rules`
copies them into this process (the web role: at start, then every few seconds,
bot/app.py), as the checks here are synchronous: the reply's runs inside its ticket
transaction.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable
from typing import Any

from bot import textfit
from bot.config import AccountConfig
from bot.models import OutboundReply
from bot.platforms import mastodon
from bot.redis import Keys, Redis
from escalation.tickets import TicketError

# Platforms whose sender puts the recipient's handle first ({handle} without the "@").
REPLY_PREFIX = {"mastodon": mastodon.REPLY_PREFIX}

# What each Mastodon account's instance reported, as last loaded: (account id, api_base)
# → mastodon.length_rule(). Module state, as the checks get only the account; the URL
# keeps apart apps in one process (tests) with same-named accounts on other instances.
_reported: dict[tuple[str, str], dict[str, int]] = {}


def _instance_key(account: AccountConfig) -> tuple[str, str]:
    return account.id, account.api_base


async def load_instance_rules(redis: Redis, keys: Keys, accounts: Iterable[AccountConfig]) -> None:
    """Take what the instances of ``accounts`` reported from Redis (none recorded: the
    defaults again)."""
    masto = [a for a in accounts if a.platform == "mastodon"]
    if not masto:
        return
    raws = await redis.mget([keys.instance(a.platform, a.id) for a in masto])
    for account, raw in zip(masto, raws, strict=True):
        try:
            reported = mastodon.length_rule(json.loads(raw)) if raw else {}
        except ValueError:
            reported = {}
        _reported[_instance_key(account)] = reported


def forget_instance_rules(accounts: Iterable[AccountConfig]) -> None:
    for a in accounts:
        _reported.pop(_instance_key(a), None)


def rules_platform(account: AccountConfig) -> str:
    """Whose length rules an account follows (a sandbox account imitates one)."""
    if account.platform == "sandbox":
        return str(account.options.get("like", "x"))
    return account.platform


def account_rule(account: AccountConfig) -> textfit.Rule:
    """The textfit rule the account's sender counts with."""
    if account.platform != "mastodon":
        return textfit.rule(rules_platform(account))
    reported = _reported.get(_instance_key(account), {})
    max_chars = account.options.get("max_characters")
    if not (isinstance(max_chars, int) and max_chars > 0):
        max_chars = reported.get("max_characters")
    return _mastodon_rule(max_chars, reported.get("characters_reserved_per_url"))


@functools.cache  # a few per process; each compiles its tokenizer once
def _mastodon_rule(max_chars: int | None, url_length: int | None) -> textfit.Rule:
    rule = textfit.rule("mastodon")  # 500, links 23
    if max_chars:
        rule = rule.with_limits(mention=max_chars, dm=max_chars)
    if url_length:
        rule = dataclasses.replace(rule, url_length=url_length)
    return rule


def account_rules(account: AccountConfig) -> dict[str, Any]:
    """The textfit rule for the console's counter, plus ``reply_prefix`` (a template with
    ``{handle}``, empty where the sender adds nothing)."""
    rule = account_rule(account).as_dict()
    rule["reply_prefix"] = REPLY_PREFIX.get(account.platform, "")
    return rule


def composed_length(account: AccountConfig, reply: OutboundReply) -> tuple[int, int, str]:
    """(length of what the sender would post for ``reply`` uncut, the limit, the prefix)."""
    rule = account_rule(account)
    limit = rule.limit(reply.kind)
    if account.platform == "mastodon":
        prefix, text = mastodon.addressed(reply)
    else:
        prefix, text = "", reply.text.strip()
    return textfit.count(prefix, rule) + textfit.count(text, rule), limit, prefix


def check_length(account: AccountConfig, reply: OutboundReply) -> None:
    """422 ``too_long`` when the sender would have to shorten ``reply``."""
    n, limit, prefix = composed_length(account, reply)
    if n > limit:
        counted = f" (counting the {prefix.strip()!r} it adds)" if prefix else ""
        raise TicketError(
            422,
            "too_long",
            f"text: {n} characters as posted on {account.platform}{counted}; the limit is {limit}",
            field="text",
            length=n,
            limit=limit,
        )
