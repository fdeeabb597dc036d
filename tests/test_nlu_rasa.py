"""The Rasa backend against a real Rasa 3.6 server (scripts/rasa.sh), and the fallback to
the embedded engine when that server dies.

Needs the Rasa venv (``scripts/rasa.sh venv``; .ci/run builds it). Outside CI, a missing
venv skips with the reason; in CI (``CI`` set) it fails, so the test never silently
disappears. Run: ``.venv/bin/pytest -m rasa tests/test_nlu_rasa.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.config import NluConfig
from bot.metrics import REGISTRY
from bot.nlu.artifact import Loaded
from bot.nlu.service import NluService
from tests.support.cli import run_replydesk
from tests.support.redis_server import free_port

pytest_plugins = ["tests.conftest_nlu"]
pytestmark = [pytest.mark.rasa, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "rasa.sh"
VENV = Path(os.environ.get("RASA_VENV", Path.home() / ".cache" / "replydesk-rasa-venv"))


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rasa exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/status", timeout=2) as r:
                if r.status == 200 and b"model_file" in r.read():
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"rasa not ready at {url} after {timeout:.0f}s")


@pytest.fixture(scope="module")
def rasa_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    if not (VENV / "bin" / "rasa").exists():
        reason = f"Rasa venv missing at {VENV} (build it with scripts/rasa.sh venv)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must build it", pytrace=False)
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    env = os.environ | {"RASA_VENV": str(VENV)}
    # Train in the foreground (cached by data hash), then serve.
    subprocess.run([str(SCRIPT), "train"], check=True, env=env, timeout=840)
    port = free_port()
    proc = subprocess.Popen(
        [str(SCRIPT), "run"],
        env=env | {"RASA_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the test can kill rasa and its children as a group
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, timeout=600)  # TensorFlow import is slow on a busy box
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _fallbacks() -> float:
    total = 0.0
    for reason in ("timeout", "http", "connection", "bad_response"):
        total += (
            REGISTRY.get_sample_value("replydesk_nlu_rasa_fallbacks_total", {"reason": reason})
            or 0.0
        )
    return total


def test_eval_through_the_rasa_backend(
    rasa_server: tuple[str, subprocess.Popen[bytes]],
    nlu_artifact: Loaded,
    nlu_data_root: Path,
    tmp_path: Path,
) -> None:
    """`replydesk eval --backend rasa` scores what the Rasa server answers (before the
    test below kills it)."""
    url, _ = rasa_server
    shutil.copytree(nlu_data_root / "nlu", tmp_path / "var" / "nlu")
    rows = [("where is my order #A12345", "order_status"), ("退款多久到账", "returns_refunds")]
    test = tmp_path / "test.csv"
    test.write_text("text,intent\n" + "".join(f"{t},{i}\n" for t, i in rows))
    config = {"redis": {"data_dir": str(tmp_path / "var")}, "nlu": {"rasa_url": url}}
    out = run_replydesk(
        tmp_path, config, "eval", "--data", str(test), "--backend", "rasa", "--json"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["backend"] == "rasa" and report["fallbacks"] == 0
    assert report["n"] == 2 and report["accuracy"] == 1.0


async def test_rasa_backend_then_fallback_when_server_dies(
    rasa_server: tuple[str, subprocess.Popen[bytes]], nlu_artifact: Loaded, nlu_data_root: Path
) -> None:
    url, proc = rasa_server
    cfg = NluConfig(backend="rasa", rasa_url=url, rasa_timeout_s=5.0, train_on_start=False)
    svc = NluService(cfg, str(nlu_data_root), preloaded=nlu_artifact)
    await svc.start()
    try:
        r = await svc.parse("hi, where is my order #A12345? it still hasn't shipped")
        assert r.backend == "rasa"
        assert r.intent == "order_status"
        assert r.ranking and r.ranking[0].name == "order_status"
        assert all(0.0 <= s.confidence <= 1.0 for s in r.ranking)
        assert r.faq and r.negativity >= 0.0  # still from the embedded engine

        before = _fallbacks()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with capture_logs() as logs:
            a = await svc.parse("where is my order #A12345")
            b = await svc.parse("退款多久到账")
        assert a.backend == b.backend == "embedded-fallback"
        assert a.intent == "order_status" and b.intent == "returns_refunds"
        assert _fallbacks() - before == 2
        # One warning for the outage, not one per message.
        assert [e["event"] for e in logs if e["event"].startswith("nlu.rasa")] == ["nlu.rasa.down"]
    finally:
        await svc.close()
