"""Config files written for a test, and the check that a bad one is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "replydesk.yml"
    p.write_text(text)
    return p


def assert_refused(tmp_path: Path, text: str, key: str) -> None:
    """Loading ``text`` fails with one line that names ``key``."""
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text), env={})
    assert key in str(e.value)
    assert "\n" not in str(e.value)
