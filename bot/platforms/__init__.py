"""Platform adapters, one module per platform, registered by name."""

from __future__ import annotations

from bot.config import AccountConfig
from bot.platforms.base import PlatformAdapter
from bot.platforms.generic import GenericAdapter
from bot.platforms.sandbox import SandboxAdapter

ADAPTERS: dict[str, type[PlatformAdapter]] = {
    GenericAdapter.name: GenericAdapter,
    SandboxAdapter.name: SandboxAdapter,
}


def adapter_for(account: AccountConfig) -> PlatformAdapter:
    return ADAPTERS[account.platform](account)
