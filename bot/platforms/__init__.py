"""Platform adapters, one module per platform, registered by name."""

from __future__ import annotations

from bot.config import AccountConfig
from bot.platforms.base import PlatformAdapter
from bot.platforms.generic import GenericAdapter
from bot.platforms.mastodon import MastodonAdapter
from bot.platforms.sandbox import SandboxAdapter
from bot.platforms.weibo import WeiboAdapter
from bot.platforms.x import XAdapter

ADAPTERS: dict[str, type[PlatformAdapter]] = {
    GenericAdapter.name: GenericAdapter,
    SandboxAdapter.name: SandboxAdapter,
    XAdapter.name: XAdapter,
    WeiboAdapter.name: WeiboAdapter,
    MastodonAdapter.name: MastodonAdapter,
}


def adapter_for(account: AccountConfig) -> PlatformAdapter:
    return ADAPTERS[account.platform](account)
