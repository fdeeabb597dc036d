"""``replydesk eval``: the report's figures on a hand-made case, the command on a test file
and as cross-validation, and clear errors for bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from bot.nlu.artifact import Loaded
from bot.nlu.data import NO_FAQ, load_test_data, load_training_data
from bot.nlu.evaluate import evaluate, evaluate_faq, evaluate_negativity
from bot.nlu.types import OUT_OF_SCOPE
from tests.support.cli import run_replydesk
from tests.support.redis_server import free_port

pytest_plugins = ["tests.conftest_nlu"]

ROOT = Path(__file__).resolve().parents[1]
TEST_ROWS = [
    ("where's my parcel, it has been a week", "order_status"),
    ("hello there", "greet"),
    ("what's the capital of peru", "out_of_scope"),
    ("can I pay with a gift card", "greet"),  # mislabelled on purpose
]


def write_test_csv(path: Path) -> Path:
    path.write_text("text,intent\n" + "".join(f'"{t}",{i}\n' for t, i in TEST_ROWS))
    return path


def test_report_figures_on_a_hand_made_case() -> None:
    gold = ["a", "a", "b", "b", OUT_OF_SCOPE, OUT_OF_SCOPE]
    top = ["a", "b", "b", "b", "a", "b"]
    conf = [0.9, 0.8, 0.7, 0.2, 0.6, 0.1]
    texts = ["t0", "t1", "t2", "t3", "t4", "t5"]
    r = evaluate(gold, top, conf, threshold=0.5, texts=texts, errors=10)
    # After the threshold: a, b, b, oos, a, oos -> right: t0, t2, t5.
    assert r.accuracy == pytest.approx(3 / 6)
    assert r.per_intent["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert r.per_intent["b"]["precision"] == pytest.approx(0.5)
    assert r.per_intent["b"]["recall"] == pytest.approx(0.5)
    assert r.oos_recall == pytest.approx(0.5)
    assert sorted(r.confused) == [("a", "b", 1), ("b", OUT_OF_SCOPE, 1), (OUT_OF_SCOPE, "a", 1)]
    at = {row["threshold"]: row for row in r.tradeoff}
    # At 0.5: t0, t1, t2 and t4 answered; 3 of the 4 in-scope rows; right: t0, t2.
    assert at[0.5]["coverage"] == pytest.approx(3 / 4)
    assert at[0.5]["precision"] == pytest.approx(2 / 4)
    assert at[0.5]["answered"] == 4
    # Wrong predictions, most confident first; t3 fell below the threshold.
    assert [(e["text"], e["predicted"]) for e in r.errors] == [
        ("t1", "b"),
        ("t4", "a"),
        ("t3", OUT_OF_SCOPE),
    ]
    assert r.errors[2]["best"] == "b" and r.errors[2]["confidence"] == 0.2
    assert evaluate(gold, top, conf, 0.5, texts, errors=1).errors == r.errors[:1]
    assert evaluate(gold, top, conf, 0.5).errors == []  # texts only when asked for


def replydesk(
    tmp_path: Path, *args: str, artifact: Path | None = None, nlu: dict[str, Any] | None = None
) -> tuple[int, str, str]:
    """``replydesk ARGS`` with its data_dir in tmp_path (holding a copy of ``artifact``)."""
    var = tmp_path / "var"
    if artifact is not None and not (var / "nlu").exists():
        shutil.copytree(artifact, var / "nlu")
    config = {"redis": {"data_dir": str(var)}, "nlu": nlu or {}}
    out = run_replydesk(tmp_path, config, *args)
    return out.returncode, out.stdout, out.stderr


def test_eval_on_a_test_file_lists_its_mistakes(
    nlu_artifact: Loaded, nlu_data_root: Path, tmp_path: Path
) -> None:
    test = write_test_csv(tmp_path / "test.csv")
    rc, out, err = replydesk(
        tmp_path, "eval", "--data", str(test), "--json", "--errors", "5",
        artifact=nlu_data_root / "nlu",
    )  # fmt: skip
    assert rc == 0, err[-2000:]
    report = json.loads(out)
    assert report["n"] == 4
    assert report["backend"] == "embedded" and report["fallbacks"] == 0
    assert report["per_intent"]["greet"]["support"] == 2
    wrong = {e["text"]: e for e in report["errors"]}
    assert wrong["can I pay with a gift card"]["gold"] == "greet"
    assert wrong["can I pay with a gift card"]["predicted"] == "payment_problem"
    assert all(e["predicted"] != e["gold"] for e in report["errors"])
    confs = [e["confidence"] for e in report["errors"]]
    assert confs == sorted(confs, reverse=True)

    rc, out, err = replydesk(tmp_path, "eval", "--data", str(test), "--errors", "5")
    assert rc == 0, err[-2000:]
    said = " ".join(out.split())
    assert "most confident mistakes" in said and "gift card" in said
    assert "<- configured" in said  # the trade-off table marks the configured threshold


def test_cross_validation_on_nlu_data(
    nlu_artifact: Loaded, nlu_data_root: Path, tmp_path: Path
) -> None:
    rc, out, err = replydesk(
        tmp_path, "eval", "--folds", "3", "--json", "--errors", "3",
        artifact=nlu_data_root / "nlu",
    )  # fmt: skip
    assert rc == 0, err[-2000:]
    report = json.loads(out)
    examples = [t for t, _ in load_training_data(ROOT / "nlu_data").examples]
    assert report["n"] == len(examples)
    assert 0.5 < report["accuracy"] <= 1.0  # every row was predicted by a model that never saw it
    assert len(report["errors"]) == 3
    assert all(e["text"] in examples for e in report["errors"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["eval", "--data", "{tmp}/missing.csv"], "missing.csv: No such file or directory"),
        (["eval", "--data", "{tmp}/broken.yml"], "broken.yml: while parsing"),
        (["eval", "--data", "{tmp}/one-column.csv"], "no labelled rows in"),
        (["eval", "--folds", "1"], "cross-validation needs at least 2 folds"),
        (["eval", "--folds", "500"], "examples, fewer than --folds 500"),
    ],
)
def test_bad_eval_input_is_one_clear_line(tmp_path: Path, args: list[str], expected: str) -> None:
    (tmp_path / "broken.yml").write_text("nlu: [oops\n")
    (tmp_path / "one-column.csv").write_text("just text\nmore text\n")
    rc, _, err = replydesk(tmp_path, *(a.format(tmp=tmp_path) for a in args))
    assert rc == 2
    assert expected in " ".join(err.split())
    assert "Traceback" not in err


def test_cross_validation_on_a_stale_export_says_to_train(tmp_path: Path) -> None:
    """An export from another recipe (an upgrade, before the next `replydesk train`)."""
    part = tmp_path / "var" / "nlu" / "encoder" / "part0"
    part.mkdir(parents=True)
    (part / "encoder.id").write_text("all-MiniLM-L6-v2@gt-0.1.0/onnx-int8-old")
    rc, _, err = replydesk(tmp_path, "eval", "--folds", "2")
    assert rc == 2 and "Traceback" not in err
    assert "made by another encoder" in err and "run `replydesk train` first" in err


def test_cross_validation_without_a_trained_artifact_says_to_train(tmp_path: Path) -> None:
    """It ran on the untuned base model through torch instead (another encoder's figures,
    torch's progress bars on stderr) and left an empty encoder folder behind."""
    rc, out, err = replydesk(tmp_path, "eval", "--folds", "2")
    assert rc == 2 and "Traceback" not in err and not out
    assert "no trained NLU artifact in" in err and "run `replydesk train` first" in err
    assert not (tmp_path / "var" / "nlu").exists()


def test_a_csv_saved_by_excel_keeps_its_header_out_of_the_rows(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a byte order mark: the header was not recognised
    and became a message labelled "intent"."""
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbftext,intent\r\nwhere is my order,order_status\r\nhi,greet\r\n")
    assert load_test_data(path) == (
        "intents",
        [("where is my order", "order_status"), ("hi", "greet")],
    )


def test_eval_says_when_rasa_was_not_what_answered(
    nlu_artifact: Loaded, nlu_data_root: Path, tmp_path: Path
) -> None:
    """--backend rasa with the Rasa server down: every row falls back, and eval says so
    rather than reporting the embedded engine's figures as Rasa's."""
    test = write_test_csv(tmp_path / "test.csv")
    rc, out, err = replydesk(
        tmp_path, "eval", "--data", str(test), "--backend", "rasa", "--json",
        artifact=nlu_data_root / "nlu",
        nlu={"rasa_url": f"http://127.0.0.1:{free_port()}", "rasa_timeout_s": 1.0},
    )  # fmt: skip
    assert rc == 0, err[-2000:]
    report = json.loads(out)
    assert report["backend"] == "rasa" and report["fallbacks"] == 4
    assert "4 of 4 messages were parsed by the embedded engine" in " ".join(err.split())


def test_backend_applies_to_a_test_file_only(tmp_path: Path) -> None:
    rc, _, err = replydesk(tmp_path, "eval", "--backend", "rasa")
    assert rc == 2 and "--backend needs --data" in err


def _letters(text: str) -> str:
    """Letters and digits only: case, spacing, punctuation and emoji dropped."""
    return re.sub(r"[\W_]+", "", text.lower())


def _near_copy(a: str, b: str) -> bool:
    """Equal letters, or one inside the other at 80 % of its length or more."""
    return _near_letters(_letters(a), _letters(b))


def _near_letters(a: str, b: str) -> bool:
    short, long = sorted((a, b), key=len)
    return short in long and len(short) >= 0.8 * len(long)


def test_near_copy_rule() -> None:
    assert _near_copy("hi Lumo 👋", "hi lumo") and _near_copy("谢谢亲 🙏", "谢谢亲")
    assert _near_copy("are you open on sundays", "Are you open on Sundays?")
    assert _near_copy("can't log in to my account", "I can't log in to my account")
    assert not _near_copy("where is my order", "where is my order? it's been two weeks")
    assert not _near_copy("啊啊啊", "啊啊啊啊啊")


def test_the_held_out_sets_share_no_line_with_the_training_data() -> None:
    """tests/data/*_heldout.yml measure paraphrases (docs/nlu.md): a line copied into
    nlu_data, or differing from a training line only in case, punctuation or an emoji,
    would be measured on its own training example."""
    from bot.nlu.engine import negativity_examples

    td = load_training_data(ROOT / "nlu_data")
    kind, intents = load_test_data(ROOT / "tests" / "data" / "nlu_heldout.yml")
    assert kind == "intents"
    kind, posts = load_test_data(ROOT / "tests" / "data" / "negativity_heldout.yml")
    assert kind == "sentiment"
    kind, tone = load_test_data(ROOT / "tests" / "data" / "tone_heldout.yml")
    assert kind == "sentiment" and len(tone) > 100
    assert len(intents) > 200 and len(posts) > 200
    kind, questions = load_test_data(ROOT / "tests" / "data" / "faq_heldout.yml")
    assert kind == "faq" and len(questions) > 200
    # Every text training reads: intent examples, sentiment lines, FAQ phrasings.
    taught = set(negativity_examples(td)[0]) | {t for t, _ in td.examples}
    taught |= {q for f in td.faqs for qs in f.questions.values() for q in qs}
    taught_letters = {_letters(t) for t in taught}
    # Every held-out file, the blind set's too (blind_*_heldout.yml).
    held_out = sorted((ROOT / "tests" / "data").glob("*_heldout.yml"))
    assert len(held_out) == 7
    lines = [line for f in held_out for line, _ in load_test_data(f)[1]]
    copies = [
        line for line in lines if any(_near_letters(_letters(line), t) for t in taught_letters)
    ]
    assert copies == []
    assert {i for _, i in intents} == {i for _, i in td.examples}
    assert (
        {lab for _, lab in posts} == {lab for _, lab in tone} == {"negative", "neutral", "positive"}
    )
    assert {f for _, f in questions} == {f.id for f in td.faqs} | {NO_FAQ}


def test_negativity_report_on_a_hand_made_case() -> None:
    labels = ["negative", "negative", "neutral", "positive", "positive"]
    scores = [0.9, 0.2, 0.1, 0.7, 0.4]
    langs = ["en", "zh", "en", "en", "zh"]
    r = evaluate_negativity(
        labels, scores, 0.5, langs, ["a", "b", "c", "d", "e"], errors=5, answer_guard=0.15
    )
    # Flagged: a (right), d (wrong); missed: b.
    assert (r.precision, r.recall, r.f1) == (0.5, 0.5, 0.5)
    assert r.accuracy == pytest.approx(3 / 5)
    assert r.flagged == {"negative": 0.5, "neutral": 0.0, "positive": 0.5}
    # At the guard 0.15 b (0.2) is kept from a FAQ answer too, and so is all but c.
    assert r.guarded == {"negative": 1.0, "neutral": 0.0, "positive": 1.0}
    assert r.per_language["en"]["precision"] == 0.5 and r.per_language["en"]["recall"] == 1.0
    assert r.per_language["zh"]["recall"] == 0.0
    # Furthest on the wrong side first: b (0.3 below), then d (0.2 above).
    assert [(e["text"], e["label"]) for e in r.errors] == [("b", "negative"), ("d", "positive")]
    at = {row["threshold"]: row for row in r.tradeoff}
    # At 0.3 e (0.4) is flagged too: a, d, e.
    assert at[0.3]["recall"] == 0.5 and at[0.3]["precision"] == pytest.approx(1 / 3)


def test_eval_on_a_sentiment_file_reports_the_negativity_detector(
    nlu_artifact: Loaded, nlu_data_root: Path, tmp_path: Path
) -> None:
    posts = tmp_path / "posts.yml"
    posts.write_text(
        'version: "1"\nsentiment:\n'
        "- label: negative\n  examples: |\n"
        "    - three weeks and my refund still hasn't arrived, unacceptable\n"
        "    - 质量太差了，用了两天就坏\n"
        "- label: neutral\n  examples: |\n    - what time does the Shanghai store open\n"
        "- label: positive\n  examples: |\n    - love my new kettle, thank you!\n"
    )
    rc, out, err = replydesk(
        tmp_path, "eval", "--data", str(posts), "--json", "--errors", "4",
        artifact=nlu_data_root / "nlu",
    )  # fmt: skip
    assert rc == 0, err[-2000:]
    report = json.loads(out)
    assert report["n"] == 4 and report["threshold"] == 0.5
    assert report["flagged"] == {"negative": 1.0, "neutral": 0.0, "positive": 0.0}
    assert report["answer_guard"] == nlu_artifact.engine.answer_guard
    assert report["guarded"]["negative"] == 1.0 and report["guarded"]["neutral"] == 0.0
    assert set(report["per_language"]) == {"en", "zh"}
    assert report["errors"] == []


def test_faq_report_on_a_hand_made_case() -> None:
    gold = ["a", "a", "b", NO_FAQ, NO_FAQ]
    ranked = [
        [("a", 0.9), ("b", 0.5)],  # right, answered
        [("b", 0.7), ("a", 0.6)],  # wrong but the right one is second; answered wrongly
        [("b", 0.4), ("a", 0.3)],  # right, below the threshold: not answered
        [("a", 0.8), ("b", 0.1)],  # unrelated, answered anyway
        [("b", 0.2), ("a", 0.1)],  # unrelated, left alone
    ]
    langs = ["en", "zh", "en", "en", "zh"]
    r = evaluate_faq(gold, ranked, 0.6, langs, ["p", "q", "r", "s", "t"], errors=5)
    assert (r.n, r.unrelated, r.k) == (3, 2, 2)
    assert r.hit1 == pytest.approx(2 / 3) and r.hit_k == 1.0
    assert r.coverage == pytest.approx(2 / 3)  # p and q answered, r not
    assert r.precision == pytest.approx(1 / 3)  # of p, q, s answered only p is right
    assert r.unrelated_answered == 0.5
    assert r.per_language["zh"] == {
        "hit1": 0.0, "coverage": 1.0, "precision": 0.0, "unrelated_answered": 0.0, "n": 1,
        "threshold": 0.6,
    }  # fmt: skip
    # Wrong answers, the surest first: s (0.8), then q (0.7); r was not answered.
    assert [(e["text"], e["answered"]) for e in r.errors] == [("s", "a"), ("q", "b")]
    at = {row["threshold"]: row for row in r.tradeoff}
    assert at[0.3]["coverage"] == 1.0 and at[0.3]["unrelated_answered"] == 0.5
    assert at[0.8] == {"threshold": 0.8, "coverage": pytest.approx(1 / 3), "precision": 0.5,
                       "unrelated_answered": 0.5}  # fmt: skip

    # Chinese held to a lower threshold of its own: the unrelated t (0.2) is answered too.
    r = evaluate_faq(gold, ranked, 0.6, langs, ["p", "q", "r", "s", "t"], 5, {"zh": 0.1})
    assert r.thresholds == {"zh": 0.1} and r.threshold == 0.6
    assert r.per_language["zh"]["threshold"] == 0.1 and r.per_language["en"]["threshold"] == 0.6
    assert (
        r.per_language["zh"]["coverage"] == 1.0
        and r.per_language["zh"]["unrelated_answered"] == 1.0
    )
    assert r.unrelated_answered == 1.0 and r.precision == pytest.approx(1 / 4)
    assert [e["text"] for e in r.errors] == ["s", "q", "t"]
    # Each language's own trade-off, its threshold among the rows: zh is q and t alone.
    zh = {row["threshold"]: row for row in r.tradeoff_by_language["zh"]}
    assert zh[0.1] == {"threshold": 0.1, "coverage": 1.0, "precision": 0.0,
                       "unrelated_answered": 1.0}  # fmt: skip
    assert zh[0.6] == {"threshold": 0.6, "coverage": 1.0, "precision": 0.0,
                       "unrelated_answered": 0.0}  # fmt: skip
    assert 0.1 not in {row["threshold"] for row in r.tradeoff_by_language["en"]}


def test_eval_on_a_faq_file_reports_retrieval(
    nlu_artifact: Loaded, nlu_data_root: Path, tmp_path: Path
) -> None:
    questions = tmp_path / "faq.yml"
    questions.write_text(
        'version: "1"\nfaq_queries:\n'
        '  - id: refund_time\n    en: ["sent my return back monday, when do I see the money?"]\n'
        '    zh: ["退货寄回去了，钱几天到账？"]\n'
        '  - id: track_order\n    en: ["where can I follow my parcel?"]\n'
        'unrelated:\n  en: ["do you sponsor football teams?"]\n'
    )
    rc, out, err = replydesk(
        tmp_path, "eval", "--data", str(questions), "--json",
        artifact=nlu_data_root / "nlu",
    )  # fmt: skip
    assert rc == 0, err[-2000:]
    report = json.loads(out)
    assert (report["n"], report["unrelated"]) == (3, 1)
    assert report["threshold"] == nlu_artifact.engine.faq.threshold
    assert report["thresholds"] == nlu_artifact.engine.faq.thresholds
    assert report["hit1"] == 1.0 and set(report["per_language"]) == {"en", "zh"}
    assert report["unrelated_answered"] == 0.0

    rc, out, err = replydesk(tmp_path, "eval", "--data", str(questions), "--backend", "rasa")
    assert rc == 2 and "FAQ retrieval comes from the embedded engine" in " ".join(err.split())
    (tmp_path / "no-id.yml").write_text('faq_queries:\n  - en: ["hi"]\n')
    rc, _, err = replydesk(tmp_path, "eval", "--data", str(tmp_path / "no-id.yml"))
    assert rc == 2 and "faq_queries[0]: needs an id" in err and "Traceback" not in err
