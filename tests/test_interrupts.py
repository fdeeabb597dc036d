"""Ctrl-C while the NLU model trains, which takes a while, in real ``replydesk`` processes.

* ``serve`` (bot/runner.py): the first start trains; a SIGINT stops training at its next
  step, closes what had started (the embedded Redis, as the default run has it) in order,
  and leaves no half-built artifact;
* ``train``: exits 130 with one line, not a traceback, and leaves no unfinished folder.
"""

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


async def interrupted(
    tmp_path: Path,
    settings: dict[str, object],
    command: tuple[str, ...],
    *,
    when: bytes,
    times: int = 1,
    signals: tuple[signal.Signals, ...] = (signal.SIGINT,),
) -> tuple[int, str]:
    """Run ``replydesk COMMAND`` with ``settings`` on the embedded Redis, send ``signals``
    once its output holds ``when`` ``times`` times; its exit code and output."""
    config = tmp_path / "replydesk.yml"
    config.write_text(yaml.safe_dump({"log_level": "info", **settings}))
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        # SIGINT back to its default in the child: a test run started in the background
        # by a shell ignores it, and Python would keep ignoring it.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "--config", str(config), *command,
            cwd=ROOT, env=env, stdout=out, stderr=out,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    try:
        await until(lambda: log.read_bytes().count(when) >= times, 120, when.decode())
        for sig in signals:
            proc.send_signal(sig)
        code = await asyncio.wait_for(proc.wait(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return code, log.read_text()


async def interrupt_while_training(tmp_path: Path, *command: str) -> tuple[int, str]:
    """Run ``replydesk COMMAND`` on an empty data_dir (so it trains), SIGINT it once
    training has started; its exit code and output."""
    settings = {
        "redis": {"data_dir": str(tmp_path / "var")},  # no url: the embedded Redis
        "nlu": {"data_path": str(ROOT / "nlu_data")},
    }
    return await interrupted(tmp_path, settings, command, when=b'"nlu.training"')


def assert_no_artifact(var: Path) -> None:
    assert not (var / "nlu").exists()
    assert not list(var.glob(".nlu-*")), "train() left its unfinished folder"


async def test_sigint_while_the_first_start_trains_stops_cleanly(tmp_path: Path) -> None:
    code, text = await interrupt_while_training(
        tmp_path, "serve", "--role", "worker", "--host", "127.0.0.1", "--port", str(free_port())
    )
    events = [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]
    assert code == 0, text
    assert "nlu.training_stopped" in events and "nlu.trained" not in events, events
    # Redis closed by its own context, last, and nothing left to the garbage collector.
    assert events[-1] == "embedded_redis_stopped", text
    assert "Traceback" not in text, text
    assert_no_artifact(tmp_path / "var")


async def test_ctrl_c_on_train_exits_130_without_a_traceback(tmp_path: Path) -> None:
    code, text = await interrupt_while_training(tmp_path, "train")
    assert code == 130, text
    assert "replydesk: interrupted" in text and "Traceback" not in text, text
    assert_no_artifact(tmp_path / "var")


async def test_sigterm_then_ctrl_c_during_the_drain_still_drains(tmp_path: Path) -> None:
    """``docker stop`` (SIGTERM), then an impatient Ctrl-C: the second signal cut the
    drain short (the sender was cancelled, not stopped) and serve exited 1 without a
    word. Now each stop says which signal, and the second is logged and ignored."""
    settings = {
        "redis": {"data_dir": str(tmp_path / "var")},
        "dialog": {"pipeline": "pass-through"},
    }
    code, text = await interrupted(
        tmp_path,
        settings,
        ("serve", "--host", "127.0.0.1", "--port", str(free_port())),
        # Both consumers running, so both have something to drain.
        when=b'"consumer_started"',
        times=2,
        signals=(signal.SIGTERM, signal.SIGINT),
    )
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert code == 0, text
    assert "Traceback" not in text, text
    assert "listening" in events, text
    # Sent back to back: when both are pending, Linux delivers the lower-numbered SIGINT
    # first, so either may be the one that stops it.
    [stopping] = [line for line in lines if line["event"] == "stopping"]
    [again] = [line for line in lines if line["event"] == "stop_in_progress"]
    assert {stopping["signal"], again["signal"]} == {"SIGTERM", "SIGINT"}, text
    stopped = sorted(line["role"] for line in lines if line["event"] == "consumer_stopped")
    assert stopped == ["sender", "worker"], text
    assert events[-1] == "embedded_redis_stopped", text
