"""A signal while ``replydesk serve`` starts (bot/runner.py): the first start trains the NLU
model, which takes a while, and Ctrl-C then must stop training at its next step, close
what had started (the embedded Redis here) in order, and leave no half-built artifact.
A real ``replydesk serve --role worker`` process with the embedded Redis, as the default
run has it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import yaml

from tests.support.redis_server import free_port
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[1]


async def test_sigint_while_the_first_start_trains_stops_cleanly(tmp_path: Path) -> None:
    var = tmp_path / "var"  # no artifact here: the start trains
    config = tmp_path / "replydesk.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "log_level": "info",
                "redis": {"data_dir": str(var)},  # no url: the embedded Redis
                "nlu": {"data_path": str(ROOT / "nlu_data")},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "--config", str(config), "serve",
            "--role", "worker", "--host", "127.0.0.1", "--port", str(free_port()),
            cwd=ROOT, env=env, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        await until(lambda: b'"nlu.training"' in log.read_bytes(), 120, "training to start")
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    events = [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]
    assert code == 0, text
    assert "nlu.training_stopped" in events and "nlu.trained" not in events, events
    # Redis closed by its own context, last, and nothing left to the garbage collector.
    assert events[-1] == "embedded_redis_stopped", text
    assert "Traceback" not in text, text
    assert not (var / "nlu").exists()
    assert not list(var.glob(".nlu-*")), "train() left its unfinished folder"
