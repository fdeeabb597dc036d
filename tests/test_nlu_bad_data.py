"""Training data that does not load (a typo in an edited file) changes nothing: ``replydesk
train`` says which file and exits 2; a worker keeps answering with its previous model."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from bot.config import NluConfig
from bot.metrics import REGISTRY
from bot.nlu.artifact import Loaded
from bot.nlu.data import NluDataError, load_test_data, load_training_data
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


# Valid YAML of the wrong shape: each edit, the file it breaks and how the error names
# the entry. Each raised AttributeError, TypeError or KeyError before.
def _edit(rel: str, change: Callable[[Any], None]) -> Callable[[Path], None]:
    def apply(data: Path) -> None:
        doc = yaml.safe_load((data / rel).read_text(encoding="utf-8"))
        change(doc)
        (data / rel).write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")

    return apply


SHAPES = {
    "sentiment item a bare string": (
        _edit("sentiment.yml", lambda d: d["sentiment"].append("oops, a bare string")),
        "sentiment.yml sentiment[3]: expected a mapping, got the string 'oops, a bare string'",
    ),
    "sentiment a mapping": (
        _edit("sentiment.yml", lambda d: d.update(sentiment={"label": "negative"})),
        "sentiment.yml sentiment: expected a list of entries, got a mapping",
    ),
    "example without text": (
        _edit("nlu/noise.yml", lambda d: d["nlu"][0].update(examples=[{"txt": "hi"}])),
        "noise.yml nlu[0].examples[0]: needs text",
    ),
    "nlu item a bare string": (
        _edit("nlu/orders.yml", lambda d: d["nlu"].insert(1, "order_status")),
        "orders.yml nlu[1]: expected a mapping, got the string 'order_status'",
    ),
    "faq phrasings a string": (
        _edit("faq.yml", lambda d: d["faqs"][2]["questions"].update(en="where is it")),
        "faq.yml faqs[2].questions: expected <lang>: [phrasings]",
    ),
    "faq answer a list": (
        _edit("faq.yml", lambda d: d["faqs"][0]["answer"].update(zh=["a", "b"])),
        "faq.yml faqs[0].answer.zh: expected an answer, got a list",
    ),
}


@pytest.mark.parametrize("case", list(SHAPES))
def test_data_of_the_wrong_shape_is_a_data_error_naming_the_entry(
    case: str, tmp_path: Path
) -> None:
    data = tmp_path / "nlu_data"
    shutil.copytree(ROOT / "nlu_data", data)
    load_training_data(data)  # the copy loads before the edit
    edit, message = SHAPES[case]
    edit(data)
    with pytest.raises(NluDataError) as e:
        load_training_data(data)
    assert str(e.value).endswith(message), e.value
    assert str(e.value).startswith(str(data))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nlu: 5\n", "nlu: expected a list of entries, got int"),
        ("sentiment:\n  - oops\n", "sentiment[0]: expected a mapping, got the string 'oops'"),
        ("faq_queries: 5\n", "faq_queries: expected a list of entries, got int"),
        ("faq_queries:\n  - id: x\n    en: [{a: 1}]\n", "faq_queries[0].en[0]: expected a message"),
    ],
)
def test_eval_data_of_the_wrong_shape_is_a_data_error(
    text: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "test.yml"
    path.write_text(text)
    with pytest.raises(NluDataError) as e:
        load_test_data(path)
    assert str(e.value).startswith(f"{path} {message}"), e.value


async def test_a_worker_keeps_its_previous_model_after_an_edit_of_the_wrong_shape(
    copies: tuple[Path, Path],
) -> None:
    data, var = copies
    SHAPES["sentiment item a bare string"][0](data)
    svc = NluService(NluConfig(), str(var), str(data))
    await svc.start()
    try:
        assert svc.ready and svc.loaded is not None and not svc.loaded.trained
        assert "sentiment.yml sentiment[3]: expected a mapping" in svc.info()["data_error"]
        assert data_invalid() == 1
    finally:
        await svc.close()


def test_cli_says_data_error_for_data_of_the_wrong_shape(
    copies: tuple[Path, Path], tmp_path: Path
) -> None:
    """train (and eval of a malformed test file) print one line and exit 2."""
    data, var = copies
    SHAPES["example without text"][0](data)
    config = {"redis": {"data_dir": str(var)}}
    out = run_replydesk(tmp_path, config, "train", "--data", str(data))
    assert out.returncode == 2, out.stderr[-2000:]
    assert (
        "replydesk: data error: " in out.stderr and "nlu[0].examples[0]: needs text" in out.stderr
    )
    assert "Traceback" not in out.stderr

    bad = tmp_path / "posts.yml"
    bad.write_text("sentiment:\n  label: negative\n")
    out = run_replydesk(tmp_path, config, "eval", "--data", str(bad))
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == (
        f"replydesk: data error: {bad} sentiment: expected a list of entries, got a mapping"
    )
