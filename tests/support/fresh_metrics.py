"""What a fresh process exports on /metrics before it has done anything: counters that
alerts and dashboards read with increase() must exist there at 0 (a series born at 1
hides its first event)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]

_WORKER = (
    "from bot.app import build_app\n"
    "from bot.config import load_settings\n"
    "s = load_settings(None, env={'REDIS_URL': 'redis://127.0.0.1:1/0'}, overrides={\n"
    "    'accounts': [{'id': 'shop', 'platform': 'generic', 'handle': 'shop',\n"
    "                  'secrets': {'signing_secret': 's'}}]})\n"
    "build_app(s, role='worker')\n"
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def fresh_samples(*, worker: bool = False) -> Samples:
    """Every sample of a new process's registry, by (name, sorted labels); ``worker``:
    after building a worker app for one generic account ``shop`` (no Redis needed)."""
    code = (
        (_WORKER if worker else "")
        + "from prometheus_client import generate_latest\n"
        + "from bot.metrics import REGISTRY\n"
        + "print(generate_latest(REGISTRY).decode())\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(res.stdout)
        for s in f.samples
    }
