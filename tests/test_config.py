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


# -- an operator's mistakes: one line saying where, and what to do -------------------


def _refused(tmp_path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text), env=env or {})
    assert "\n" not in str(e.value)
    return str(e.value)


def test_an_unknown_key_names_the_file_line_and_the_key_meant(tmp_path):
    # Was "server.public_ulr: unknown setting": no file, no line, no hint.
    msg = _refused(tmp_path, "log_level: info\nserver:\n  public_ulr: https://x.example\n")
    assert msg.startswith("server.public_ulr: unknown setting (did you mean public_url?)"), msg
    assert f"({tmp_path / 'replydesk.yml'}, line 3)" in msg
    msg = _refused(tmp_path, "accounts:\n  - id: a\n    platform: generic\n    handel: shop\n")
    assert "accounts[0].handel: unknown setting (did you mean handle?)" in msg
    assert "line 4" in msg


def test_a_bad_value_names_its_line(tmp_path):
    msg = _refused(tmp_path, "ops:\n  window_s: 600\n  min_count: ten\n")
    assert "ops.min_count: expected an integer" in msg and "line 3)" in msg


def test_a_key_given_twice_is_refused(tmp_path):
    # YAML keeps the last one silently: the operator's edit of the first did nothing.
    msg = _refused(tmp_path, "ops:\n  window_s: 600\n  min_count: 5\n  window_s: 300\n")
    assert "ops.window_s: set twice, on lines 2 and 4" in msg


def test_a_yaml_error_says_what_is_wrong(tmp_path):
    msg = _refused(tmp_path, "ops:\n\twindow_s: 600\n")
    assert "line 2: not valid YAML: found character '\\t'" in msg, msg


def test_a_misspelt_setting_variable_is_named(tmp_path):
    msg = _refused(tmp_path, "", env={"REPLYDESK__WORKER__CONCURENCY": "8"})
    assert "worker.concurency: unknown setting (did you mean concurrency?)" in msg
    assert "(from REPLYDESK__WORKER__CONCURENCY)" in msg
    msg = _refused(tmp_path, "", env={"REPLYDESK__WORKER": "8"})
    assert "worker: expected a mapping" in msg and "(from REPLYDESK__WORKER)" in msg


ONE_X_ACCOUNT = "accounts:\n  - {id: brand_x, platform: x, user_id: '1'}\n"


def test_a_secret_variable_for_a_misspelt_account_is_named(tmp_path):
    # It passed as a service secret "brnad_x_consumer_secret", and brand_x's own secret
    # was then reported missing although the operator had set it.
    msg = _refused(
        tmp_path, ONE_X_ACCOUNT, env={"REPLYDESK_SECRET_BRNAD_X_CONSUMER_SECRET": "hunter2"}
    )
    assert msg.startswith("REPLYDESK_SECRET_BRNAD_X_CONSUMER_SECRET: no account 'brnad_x'")
    assert "REPLYDESK_SECRET_BRAND_X_CONSUMER_SECRET" in msg and "hunter2" not in msg


def test_a_missing_secret_points_at_a_misspelt_one(tmp_path):
    s = load_settings(
        write(tmp_path, ONE_X_ACCOUNT),
        env={"REPLYDESK_SECRET_BRAND_X_CONSUMER_SECRT": "hunter2"},
    )
    with pytest.raises(ConfigError) as e:
        s.accounts[0].secret("consumer_secret")
    msg = str(e.value)
    assert "missing: set $REPLYDESK_SECRET_BRAND_X_CONSUMER_SECRET" in msg
    assert "REPLYDESK_SECRET_BRAND_X_CONSUMER_SECRT is set: a typo?" in msg
    assert "hunter2" not in msg


@pytest.mark.parametrize(
    "url",
    [
        "localhost:6379",  # no scheme
        "http://:hunter2@localhost:6379/0",
        "redis://:hunter2@localhost:6379/zero",
        "redis://:hunter2@localhost:99999/0",
    ],
)
def test_a_malformed_redis_url_is_refused_at_load_without_the_password(tmp_path, url):
    # `replydesk config` said "config OK" for these; serve then failed on connecting.
    msg = _refused(tmp_path, "", env={"REDIS_URL": url})
    assert msg.startswith("redis.url: ") and "(from REDIS_URL)" in msg, msg
    assert "hunter2" not in msg


def test_a_public_url_without_a_scheme_is_refused(tmp_path):
    msg = _refused(tmp_path, "server:\n  public_url: bot.example.com\n")
    assert msg.startswith("server.public_url: expected https://") and "line 2)" in msg


def test_times_dates_and_ids_with_a_leading_zero_stay_as_written(tmp_path):
    # YAML 1.1 read 9:00 as 540 (base 60), 0123 as 83 (octal), and 2026-12-25 as a date,
    # which holidays refused ("expected a string").
    s = load_settings(
        write(
            tmp_path,
            "escalation: {business_start: 9:00, business_end: 17:30, holidays: [2026-12-25]}\n"
            "accounts:\n  - {id: a, platform: generic, user_id: 0123}\n",
        ),
        env={"REPLYDESK__ESCALATION__BUSINESS_END": "18:00"},
    )
    assert s.escalation.business_start == "9:00" and s.escalation.business_end == "18:00"
    assert s.accounts[0].user_id == "0123" and s.escalation.holidays == ["2026-12-25"]
    # A float would turn into a string the platform never sends (5555555555.0).
    msg = _refused(tmp_path, "accounts:\n  - {id: a, platform: generic, user_id: 5555555555.0}\n")
    assert "accounts[0].user_id: expected a string" in msg and "quote it" in msg


def test_a_config_variable_naming_no_file_says_so(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings(env={"REPLYDESK_CONFIG": str(tmp_path / "nope.yml")})
    assert "(from $REPLYDESK_CONFIG): not a file" in str(e.value)


@pytest.mark.parametrize(
    "text, needle",
    [
        # Found after loading (the SLA clocks, a platform adapter): they named no line.
        ("log_level: info\nescalation:\n  timezone: Europe/Londn\n", "line 3)"),
        ("accounts:\n  - id: m\n    platform: mastodon\n", "line 2)"),
    ],
)
def test_errors_found_after_loading_name_the_line_too(tmp_path, text, needle):
    proc = replydesk_cli("config", config=write(tmp_path, text))
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("replydesk: config error:") and needle in line, line


def test_an_api_base_without_a_scheme_is_refused(tmp_path):
    # "mastodon.example" passed `replydesk config` and failed on the first request.
    msg = _refused(
        tmp_path, "accounts:\n  - id: m\n    platform: mastodon\n    api_base: mastodon.example\n"
    )
    assert msg.startswith("accounts[0].api_base: expected https://") and "line 4)" in msg
