"""How long an agent's reply may be: the console's counter and the API's check.

Both count what the sender will post, with ``bot.textfit``'s counting and the account's
limit. The Mastodon sender (``MastodonAdapter.compose``) puts ``@handle `` before the
text (a direct post reaches only the accounts it mentions) and fits the text into what
is left, so that prefix counts too; elsewhere the text is posted as written. A reply
over the limit would be cut by the sender, so the API refuses it (422 ``too_long``).
"""

from __future__ import annotations

from typing import Any

from bot import textfit
from bot.config import AccountConfig
from bot.models import OutboundReply
from bot.platforms import mastodon
from escalation.tickets import TicketError

# Platforms whose sender puts the recipient's handle first ({handle} without the "@").
REPLY_PREFIX = {"mastodon": mastodon.REPLY_PREFIX}


def rules_platform(account: AccountConfig) -> str:
    """Whose length rules an account follows (a sandbox account imitates one)."""
    if account.platform == "sandbox":
        return str(account.options.get("like", "x"))
    return account.platform


def _limits(account: AccountConfig) -> dict[str, int]:
    max_chars = account.options.get("max_characters")
    if isinstance(max_chars, int) and max_chars > 0:  # a Mastodon instance's own limit
        return {"mention": max_chars, "dm": max_chars}
    return {}


def account_rules(account: AccountConfig) -> dict[str, Any]:
    """The textfit rule for the console's counter, plus ``reply_prefix`` (a template with
    ``{handle}``, empty where the sender adds nothing)."""
    rule = textfit.rules_for(rules_platform(account), **_limits(account))
    rule["reply_prefix"] = REPLY_PREFIX.get(account.platform, "")
    return rule


def composed_length(account: AccountConfig, reply: OutboundReply) -> tuple[int, int, str]:
    """(length of what the sender would post for ``reply`` uncut, the limit, the prefix)."""
    rule = textfit.rule(rules_platform(account))
    limit = _limits(account).get(reply.kind) or rule.limit(reply.kind)
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
