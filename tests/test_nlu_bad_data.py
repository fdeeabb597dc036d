"""Training data that does not load (a typo in an edited file) changes nothing: ``replydesk
train`` says which file and exits 2; a worker keeps answering with its previous model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import structlog

from bot.config import NluConfig
from bot.metrics import REGISTRY
from bot.nlu.artifact import Loaded
from bot.nlu.data import NluDataError
from bot.nlu.service import NluService
from tests.support.cli import run_replydesk

pytest_plugins = ["tests.conftest_nlu"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def copies(nlu_artifact: Loaded, nlu_data_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(nlu_data copy, data_dir holding a copy of the trained artifact)."""
    data, var = tmp_path / "nlu_data", tmp_path / "var"
    shutil.copytree(ROOT / "nlu_data", data)
    shutil.copytree(nlu_data_root / "nlu", var / "nlu")
    return data, var


def break_faq(data: Path) -> str:
    good = (data / "faq.yml").read_text()
    (data / "faq.yml").write_text(good + "  - [unclosed\n")
    return good


def data_invalid() -> float | None:
    return REGISTRY.get_sample_value("replydesk_nlu_data_invalid")


def test_train_on_broken_data_says_which_file_and_changes_nothing(
    copies: tuple[Path, Path], tmp_path: Path
) -> None:
    data, var = copies
    break_faq(data)
    stamp = (var / "nlu" / "stamp.json").read_bytes()
    config = {"log_level": "info", "redis": {"data_dir": str(var)}}
    out = run_replydesk(tmp_path, config, "train", "--data", str(data))
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"replydesk: data error: {data / 'faq.yml'}: while parsing" in out.stderr
    assert "Traceback" not in out.stderr
    assert "nlu.encoder" not in out.stderr  # failed before exporting or loading the encoder
    assert (var / "nlu" / "stamp.json").read_bytes() == stamp
    assert not list(var.glob(".nlu-*"))


async def test_a_worker_keeps_its_previous_model_until_the_data_is_fixed(
    copies: tuple[Path, Path],
) -> None:
    data, var = copies
    good = break_faq(data)
    svc = NluService(NluConfig(), str(var), str(data))
    with structlog.testing.capture_logs() as logs:
        await svc.start()
    try:
        assert svc.ready
        r = await svc.parse("how do I track my order")
        assert r.intent == "order_status"
        assert "faq.yml" in svc.info()["data_error"]
        assert data_invalid() == 1
        invalid = [e for e in logs if e["event"] == "nlu.data_invalid"]
        assert len(invalid) == 1 and invalid[0]["log_level"] == "error"
    finally:
        await svc.close()

    (data / "faq.yml").write_text(good + "\n")  # fixed (and changed): retrains
    svc = NluService(NluConfig(), str(var), str(data))
    await svc.start()
    try:
        assert svc.loaded is not None and svc.loaded.trained
        assert "data_error" not in svc.info()
        assert data_invalid() == 0
    finally:
        await svc.close()


async def test_broken_data_with_no_previous_model_fails_the_start(
    nlu_artifact: Loaded, tmp_path: Path
) -> None:
    data = tmp_path / "nlu_data"
    shutil.copytree(ROOT / "nlu_data", data)
    break_faq(data)
    svc = NluService(NluConfig(), str(tmp_path / "var"), str(data))
    with pytest.raises(NluDataError, match=r"faq\.yml"):
        await svc.start()
    assert not (tmp_path / "var" / "nlu").exists()
