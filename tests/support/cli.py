"""Run the ``replydesk`` command line in a child process, from the project root."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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


@contextlib.contextmanager
def serving(
    config: str | Path,
    *args: str,
    port: int,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``replydesk --config CONFIG serve --port PORT ARGS``, up (``/healthz`` answers) for
    the ``with`` block, then stopped with SIGTERM; its output goes to ``log`` if given."""
    with open(log or "/dev/null", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "--config", str(config), "serve",
             "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=ROOT, env=env, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)
