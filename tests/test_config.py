"""Configuration: file + environment, secrets kept out of reprs and logs, clear errors."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, Secret, load_settings
from tests.support.cli import replydesk_cli
from tests.support.config_files import assert_refused, write


def test_file_env_and_secret_env(tmp_path):
    cfg = write(
        tmp_path,
        "server: {port: 9000}\n"
        "accounts:\n  - id: acme_cs\n    platform: generic\n    user_id: 12\n",
    )
    s = load_settings(
        cfg,
        env={
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "REPLYDESK__WORKER__CONCURRENCY": "7",
            "REPLYDESK_SECRET_ACME_CS_SIGNING_SECRET": "s3cret",
            "REPLYDESK_SECRET_NOTIFY_WEBHOOK_URL": "https://hooks.example/x",
        },
    )
    assert s.server.port == 9000
    assert s.worker.concurrency == 7
    acct = s.account("acme_cs")
    assert acct is not None and acct.user_id == "12"
    assert acct.secret("signing_secret") == "s3cret"
    assert s.secrets["notify_webhook_url"].get() == "https://hooks.example/x"
    assert s.redis.url is not None and s.redis.url.get() == "redis://127.0.0.1:1/0"


def test_secrets_never_show_in_reprs():
    s = load_settings(
        env={"REPLYDESK_SECRET_A_SIGNING_SECRET": "hunter2", "REDIS_URL": "redis://:pw@h/0"},
        overrides={"accounts": [{"id": "a", "platform": "generic", "secrets": {"api": "tok"}}]},
        config_file="/dev/null",
    )
    text = repr(s) + str(s.accounts) + str(s.redis)
    for value in ("hunter2", "tok", ":pw@"):
        assert value not in text
    assert repr(Secret("x")) == "Secret('**********')"


@pytest.mark.parametrize(
    "text, key",
    [
        ("server: {port: http}\n", "server.port"),
        ("server: {port: 70000}\n", "server.port"),
        ("worker: {concurrency: 1, retries: 2}\n", "worker.retries"),
        ("accounts:\n  - {id: a, platform: fb}\n", "accounts[0].platform"),
        ("accounts:\n  - {platform: x}\n", "accounts[0].id"),
        ("accounts:\n  - {id: a, platform: x}\n  - {id: a, platform: x}\n", "accounts[1].id"),
        ("server: [1, 2]\n", "server"),
        ("server: {port: 1\n", "line"),
        ("nlu: {faq_thresholds: {zh: high}}\n", "nlu.faq_thresholds.zh"),
        ("nlu: {faq_thresholds: 0.5}\n", "nlu.faq_thresholds"),
        ("nlu: {answer_guard: 0}\n", "nlu.answer_guard"),
        ("nlu: {answer_guard: 1.5}\n", "nlu.answer_guard"),
        ("dialog: {max_bot_replies_per_hour: 0}\n", "dialog.max_bot_replies_per_hour"),
        # Over max_turns / 2 (10 by default) the turns kept could not show the cap.
        ("dialog: {max_bot_replies_per_hour: 11}\n", "dialog.max_bot_replies_per_hour"),
        ("dialog: {order_lookup_timeout_s: 0}\n", "dialog.order_lookup_timeout_s"),
        # Past the Redis socket timeout: every idle read would fail with a TimeoutError.
        ("worker: {block_ms: 5000}\n", "worker.block_ms"),
    ],
)
def test_errors_name_the_key(tmp_path, text, key):
    assert_refused(tmp_path, text, key)


def test_reply_cap_default_and_file(tmp_path):
    assert load_settings(env={}, config_file="/dev/null").dialog.max_bot_replies_per_hour == 5
    cfg = write(tmp_path, "dialog: {max_bot_replies_per_hour: 10}\n")
    assert load_settings(cfg, env={}).dialog.max_bot_replies_per_hour == 10


def test_missing_secret_names_key_and_env_var():
    s = load_settings(
        env={},
        overrides={"accounts": [{"id": "shop-1", "platform": "generic"}]},
        config_file="/dev/null",
    )
    with pytest.raises(ConfigError) as e:
        s.accounts[0].secret("signing_secret")
    assert "accounts[shop-1].secrets.signing_secret" in str(e.value)
    assert "REPLYDESK_SECRET_SHOP_1_SIGNING_SECRET" in str(e.value)


def test_config_error_stops_startup_with_one_line(tmp_path):
    cfg = write(tmp_path, "accounts:\n  - {id: a, platform: fb}\n")
    proc = replydesk_cli("serve", config=cfg)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "accounts[0].platform" in lines[0]


def test_faq_thresholds_per_language(tmp_path):
    s = load_settings(
        write(tmp_path, "nlu: {faq_threshold: 0.7, faq_thresholds: {zh: 0.5}}\n"), env={}
    )
    assert s.nlu.faq_threshold == 0.7 and s.nlu.faq_thresholds == {"zh": 0.5}


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "replydesk.yml"
    path.write_bytes(b"log_level: info\n# caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"replydesk\.yml: not UTF-8 text \(byte 21\)"):
        load_settings(path, env={})
