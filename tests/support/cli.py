"""Run the ``replydesk`` command line in a child process, from the project root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def replydesk_cli(
    *args: str,
    config: str | Path = "/dev/null",
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``replydesk --config CONFIG ARGS`` (``/dev/null``: the built-in defaults)."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(config), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def run_replydesk(
    tmp_path: Path, config: dict[str, Any], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``replydesk ARGS`` with ``config`` written to ``<tmp_path>/replydesk.yml``."""
    path = tmp_path / "replydesk.yml"
    path.write_text(yaml.safe_dump(config))
    return replydesk_cli(*args, config=path, timeout=timeout)
