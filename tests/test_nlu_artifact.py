"""The artifact folder after things went wrong: a damaged file in the old artifact, and
what a training killed mid-way leaves beside it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.config import NluConfig
from bot.nlu import artifact as art_mod
from bot.nlu.artifact import Loaded, load_or_train, stale_reason
from bot.nlu.service import NluService
from tests.support.trained_nlu import add_example, forbid_training

pytest_plugins = ["tests.conftest_nlu"]

CFG = NluConfig()


@pytest.fixture
def edited(nlu_artifact: Loaded, nlu_data_dir: Path, nlu_data_root: Path, tmp_path: Path) -> Path:
    """A data_dir holding a copy of the trained artifact, whose data (``<it>/nlu_data``)
    has since gained an example: the next start retrains from the copy."""
    shutil.copytree(nlu_data_dir, tmp_path / "nlu_data")
    shutil.copytree(nlu_data_root / "nlu", tmp_path / "var" / "nlu")
    add_example(tmp_path / "nlu_data", "many thanks, sorted now")
    return tmp_path / "var"


@pytest.mark.slow
async def test_a_damaged_export_in_the_old_artifact_is_retrained_from_nothing(
    edited: Path,
) -> None:
    """A truncated ONNX export plus a data edit: the retraining that reuses the export
    fails, and one from nothing follows, logged once. Before, every start failed."""
    onnx = edited / "nlu" / "encoder" / "part0" / "encoder.int8.onnx"
    onnx.write_bytes(onnx.read_bytes()[:100_000])
    data = edited.parent / "nlu_data"
    svc = NluService(CFG, str(edited), str(data))
    with capture_logs() as logs:
        await svc.start()
    try:
        assert svc.ready and svc.loaded is not None and svc.loaded.trained
        assert svc.loaded.stamp.report["texts_reused"] == 0  # nothing from the old artifact
        assert (await svc.parse("where is my order #A12345")).intent == "order_status"
    finally:
        await svc.close()
    retries = [e for e in logs if e["event"] == "nlu.training_retry_fresh"]
    assert len(retries) == 1 and "encoder.int8.onnx" in retries[0]["error"]
    assert stale_reason(edited / "nlu", data, CFG.encoder, CFG.runtime) is None
    assert not [name for name in os.listdir(edited) if name.startswith(".nlu-")]
    art_mod.load(edited / "nlu", CFG.encoder, CFG.runtime)  # the new artifact loads


def test_a_failure_that_is_not_the_old_artifacts_is_not_retried(
    edited: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retraining that did not reuse anything (forced) fails as it did: retrying from
    nothing would only fail again, a minute later."""
    calls: list[object] = []

    def failing_train(*a: object, **k: object) -> Loaded:
        calls.append(k.get("reuse_old"))
        raise RuntimeError("no room")

    monkeypatch.setattr(art_mod, "train", failing_train)
    data = edited.parent / "nlu_data"
    with pytest.raises(RuntimeError, match="no room"):
        load_or_train(data, edited / "nlu", CFG.encoder, CFG.runtime, force=True)
    assert calls == [False]
    calls.clear()
    with pytest.raises(RuntimeError, match="no room"):  # reused, failed, retried once
        load_or_train(data, edited / "nlu", CFG.encoder, CFG.runtime)
    assert calls == [True, False]


def test_leftovers_of_a_killed_training_are_removed_before_training(
    edited: Path, nlu_artifact: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training killed mid-way (SIGKILL, OOM, power) leaves its temporary folder, about
    100 MB each time; the next training, under the lock, removes it (and ``nlu.old``)."""
    for name in (".nlu-k1ll3d", ".nlu-0ld3r", "nlu.old"):
        (edited / name / "encoder").mkdir(parents=True)
        (edited / name / "encoder" / "encoder.int8.onnx").write_bytes(b"\0" * 4096)
    (edited / "other").mkdir()  # not ours: stays
    seen: list[list[str]] = []

    def fake_train(nlu_data: Path, art: Path, *a: object, **k: object) -> Loaded:
        seen.append(sorted(p.name for p in art.parent.iterdir()))
        return nlu_artifact

    monkeypatch.setattr(art_mod, "train", fake_train)
    with capture_logs() as logs:
        load_or_train(edited.parent / "nlu_data", edited / "nlu", CFG.encoder, CFG.runtime)
    assert seen == [["nlu", "nlu.lock", "other"]]
    assert [e["folders"] for e in logs if e["event"] == "nlu.leftovers_removed"] == [2]


def test_an_artifact_a_killed_swap_moved_aside_is_put_back(
    nlu_artifact: Loaded,
    nlu_data_dir: Path,
    nlu_data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed between its two renames, a training leaves the old artifact as ``nlu.old``
    and no ``nlu``: that artifact is still the current one, and loads instead of a
    training from nothing."""
    shutil.copytree(nlu_data_root / "nlu", tmp_path / "nlu.old")
    shutil.copytree(nlu_data_root / "nlu", tmp_path / ".nlu-unfinished")

    forbid_training(monkeypatch, "trained although the artifact was only moved aside")
    loaded = load_or_train(nlu_data_dir, tmp_path / "nlu", CFG.encoder, CFG.runtime)
    assert not loaded.trained
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nlu", "nlu.lock"]


@pytest.mark.slow
def test_the_new_artifact_is_on_disk_before_it_takes_the_name(
    edited: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file of the new artifact, and its folders, are fsynced before the folder is
    renamed into place, and the parent folder after: after a power cut the name never
    points at files the kernel had not written."""
    events: list[tuple[str, str]] = []
    fsync, rename = os.fsync, Path.rename

    def recording_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def recording_rename(self: Path, target: str | os.PathLike[str]) -> Path:
        events.append(("rename", f"{self} -> {target}"))
        return rename(self, target)

    monkeypatch.setattr(art_mod.os, "fsync", recording_fsync)
    monkeypatch.setattr(Path, "rename", recording_rename)
    art = edited / "nlu"
    load_or_train(edited.parent / "nlu_data", art, CFG.encoder, CFG.runtime)

    into_place = [i for i, (kind, what) in enumerate(events) if what.endswith(f" -> {art}")]
    assert len(into_place) == 1
    swap = into_place[0]
    tmp = events[swap][1].split(" -> ")[0]
    synced = {what for kind, what in events[:swap] if kind == "fsync"}
    for folder, _, files in os.walk(art):
        rel = os.path.relpath(folder, art)
        tmp_folder = os.path.normpath(os.path.join(tmp, rel))
        assert tmp_folder in synced
        for name in files:
            assert os.path.join(tmp_folder, name) in synced, f"{rel}/{name} not fsynced"
    assert ("fsync", str(edited)) in events[swap + 1 :]  # the renames themselves


@pytest.mark.slow
async def test_an_artifact_of_an_older_format_lends_its_export_but_not_its_vectors(
    edited: Path,
) -> None:
    """Its vectors hold the languages its detector gave the texts (which encoder parts
    ran): format 11 detects some differently, and reusing them kept the old slices."""
    import json

    stamp_path = edited / "nlu" / "stamp.json"
    stamp = json.loads(stamp_path.read_text())
    stamp["format"] = art_mod.FORMAT - 1
    stamp_path.write_text(json.dumps(stamp))
    svc = NluService(CFG, str(edited), str(edited.parent / "nlu_data"))
    await svc.start()
    try:
        assert svc.loaded is not None and svc.loaded.trained
        assert svc.loaded.stamp.report["texts_reused"] == 0
    finally:
        await svc.close()
