"""The multi-account example in docs/accounts.md is a valid configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.platforms import adapter_for
from bot.platforms.mastodon import MastodonAdapter
from bot.platforms.weibo import WeiboAdapter
from bot.platforms.x import XAdapter

DOC = Path(__file__).resolve().parents[1] / "docs" / "accounts.md"


def test_documented_example_loads_and_builds_adapters(tmp_path: Path) -> None:
    text = DOC.read_text()
    yaml_block = re.search(r"```yaml\n(.*?)```", text, re.S)
    sh_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert yaml_block and sh_block
    cfg = tmp_path / "replydesk.yml"
    cfg.write_text(yaml_block.group(1))
    env = {"REDIS_URL": "redis://127.0.0.1:1/0"}
    for name in re.findall(r"(REPLYDESK_SECRET_[A-Z_]+)=", sh_block.group(1)):
        env[name] = f"value-of-{name}"
    settings = load_settings(cfg, env=env)
    adapters = {a.id: adapter_for(a) for a in settings.accounts}
    assert [type(adapters[k]) for k in ("acme-x", "acme-cn", "acme-social", "acme-gadgets")] == [
        XAdapter,
        WeiboAdapter,
        MastodonAdapter,
        XAdapter,
    ]
    x = settings.account("acme-x")
    assert (
        x is not None
        and x.secret("consumer_secret") == "value-of-REPLYDESK_SECRET_ACME_X_CONSUMER_SECRET"
    )
    assert adapters["acme-x"].api_base == "https://api.x.com"  # type: ignore[attr-defined]
    assert adapters["acme-x"].oauth1 and not adapters["acme-gadgets"].oauth1  # type: ignore[attr-defined]
    assert adapters["acme-cn"].api_base == "https://m.api.weibo.com"  # type: ignore[attr-defined]


@pytest.mark.parametrize("platform", ["generic", "sandbox"])
def test_an_account_without_its_signing_secret_stops_start_up(
    platform: str, tmp_path: Path
) -> None:
    """Every webhook of such an account would fail with a 500; the service refuses to
    start instead, naming the key and its environment variable."""
    cfg = tmp_path / "replydesk.yml"
    cfg.write_text(f"accounts:\n  - {{id: shop, platform: {platform}, handle: shop}}\n")
    settings = load_settings(cfg, env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    with pytest.raises(ConfigError, match=r"secrets\.signing_secret.*REPLYDESK_SECRET_SHOP_"):
        adapter_for(settings.accounts[0])
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "REPLYDESK_SECRET_SHOP_SIGNING_SECRET": "s3"}
    assert adapter_for(load_settings(cfg, env=env).accounts[0]).account.id == "shop"
