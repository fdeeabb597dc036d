"""The multi-account example in docs/accounts.md is a valid configuration."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import load_settings
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
