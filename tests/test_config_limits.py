"""Settings that would break a running service later (a crash every tick, a worker that
never reads, a traceback at start, a leaked secret) are refused when the config loads."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings
from tests.support.cli import replydesk_cli
from tests.support.config_files import assert_refused, write


@pytest.mark.parametrize(
    "text, key",
    [
        ("log_level: loud\n", "log_level"),
        ("ops: {baseline_half_life_s: 0}\n", "ops.baseline_half_life_s"),
        ("ops: {tick_s: 0}\n", "ops.tick_s"),
        ("ops: {tick_s: -1}\n", "ops.tick_s"),
        ("ops: {bucket_s: 0}\n", "ops.bucket_s"),
        ("ops: {bucket_s: 60, window_s: 30}\n", "ops.window_s"),
        ("ops: {min_count: 0}\n", "ops.min_count"),
        ("ops: {notify_timeout_s: 0}\n", "ops.notify_timeout_s"),
        ("ops: {alert_events_max: 0}\n", "ops.alert_events_max"),
        ("worker: {concurrency: 0}\n", "worker.concurrency"),
        ("worker: {block_ms: 0}\n", "worker.block_ms"),
        ("worker: {visibility_timeout_s: 0}\n", "worker.visibility_timeout_s"),
        ("worker: {claim_interval_s: 0}\n", "worker.claim_interval_s"),
        ("escalation: {resolved_retention_days: -1}\n", "escalation.resolved_retention_days"),
    ],
)
def test_values_that_break_later_are_refused_naming_the_key(tmp_path, text, key):
    assert_refused(tmp_path, text, key)


def test_log_level_is_case_insensitive(tmp_path):
    assert load_settings(write(tmp_path, "log_level: WARNING\n"), env={}).log_level == "WARNING"


@pytest.mark.parametrize(
    "args, text",
    [
        (("--log-level", "loud", "config"), ""),
        (("config",), "log_level: loud\n"),
        (("config",), "ops: {baseline_half_life_s: 0}\n"),
        # Checked where the SLA clocks are built: `config` said "config OK" for these.
        (("config",), "escalation: {business_days: [1, 7]}\n"),
        (("config",), "escalation: {policies: {normal: {first_response_min: 0}}}\n"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line(tmp_path, args, text):
    proc = replydesk_cli(*args, config=write(tmp_path, text))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("replydesk: config error:"), proc.stderr


@pytest.mark.parametrize(
    "url",
    [
        "hooks.example/services/T000/B000/SECRETTOKEN",  # no scheme
        "ftp://hooks.example/services/T000/B000/SECRETTOKEN",
        "https:///services/T000/B000/SECRETTOKEN",  # no host
        "https://hooks.example:99999/services/T000/B000/SECRETTOKEN",  # no such port
    ],
)
def test_a_malformed_notify_url_is_refused_without_showing_it(url):
    with pytest.raises(ConfigError) as e:
        load_settings(env={"REPLYDESK_SECRET_NOTIFY_WEBHOOK_URL": url}, config_file="/dev/null")
    assert "secrets.notify_webhook_url" in str(e.value)
    assert "SECRETTOKEN" not in str(e.value) and "hooks.example" not in str(e.value)


def test_a_notify_url_is_http_or_https():
    for url in ("https://hooks.example/services/T0/B0/x", "http://127.0.0.1:9000/hook"):
        s = load_settings(env={"REPLYDESK_SECRET_NOTIFY_WEBHOOK_URL": url}, config_file="/dev/null")
        assert s.secrets["notify_webhook_url"].get() == url
