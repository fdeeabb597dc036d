"""Run the ``replydesk`` command line in a child process with a config of our own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def run_replydesk(
    tmp_path: Path, config: dict[str, Any], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``replydesk --config <tmp_path>/replydesk.yml ARGS`` from the project root."""
    path = tmp_path / "replydesk.yml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(path), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
