"""The trained artifact in ``<data_dir>/nlu/``: ``engine.pkl``, ``stamp.json`` and the
exported encoder. The stamp (data hash, encoder, library versions) decides staleness;
a stale or missing artifact is retrained, never half-loaded."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.metadata as md
import json
import os
import pickle
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from bot.nlu import reuse
from bot.nlu.data import NluDataError, data_hash, data_warnings, load_training_data
from bot.nlu.encoder import Encoder, EncoderChanged, load_encoder
from bot.nlu.engine import Engine, Step, Thresholds, TrainReport, train_engine
from bot.nlu.tuning import EPOCHS, FaqTuning, fold_encoders

log = structlog.get_logger(__name__)

# 2: texts lose their leading @mentions before training and parsing.
# 3: FAQ retrieval weighs the encoder parts per language.
# 4: FAQ scoring per language is a Blend (alpha, part weights, prototype weight).
# 5: intent confidence comes from a model over softmax and nearest-example signals.
# 6: encoder parts may skip posts in other languages (minilm:en); cosines over the parts that ran.
# 7: the confidence also reads how close the top intent's examples are to one another.
# 8: trainable encoder parts are fine-tuned on the FAQ bank (bot/nlu/tuning.py).
# 9: FAQ answer thresholds per language.
# 10: the answer guard (engine.choose_answer_guard).
# 11: detect_language weighs Latin words, not letters, against Chinese characters (two
#     training texts change language, so an artifact built before is retrained).
# 12: the answer guard weighs held-out scores with a spread (engine.GUARD_SPREAD).
FORMAT = 12
DATA_CHANGED = "training data changed"
STEPS = (
    "data",
    "tune",
    "encoder",
    "encode",
    "features",
    "intents",
    "negativity",
    "faq",
    "save",
)
_LIBS = ("scikit-learn", "numpy", "scipy", "onnxruntime", "sentence-transformers", "tokenizers")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            out[lib] = md.version(lib)
        except md.PackageNotFoundError:
            out[lib] = "none"
    return out


@dataclass
class Stamp:
    format: int
    data_sha256: str
    encoder: str  # configured name
    runtime: str  # configured runtime
    encoder_id: str  # what actually ran (model id + runtime)
    tune_epochs: int  # FAQ tuning epochs configured (0: off)
    versions: dict[str, str]
    created: float
    report: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, ensure_ascii=False)


def artifact_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "nlu"


def read_stamp(art: Path) -> Stamp | None:
    try:
        return Stamp(**json.loads((art / "stamp.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def stale_reason(
    art: Path, nlu_data: Path, encoder: str, runtime: str, tune_epochs: int = EPOCHS
) -> str | None:
    """Why the artifact must be (re)built, or None when it is current."""
    stamp = read_stamp(art)
    if stamp is None or not (art / "engine.pkl").exists():
        return "missing"
    if stamp.format != FORMAT:
        return "format changed"
    if stamp.data_sha256 != data_hash(nlu_data):
        return DATA_CHANGED
    if (stamp.encoder, stamp.runtime, stamp.tune_epochs) != (encoder, runtime, tune_epochs):
        return "encoder changed"
    if stamp.versions != library_versions():
        return "library versions changed"
    return None


@dataclass
class Loaded:
    engine: Engine
    encoder: Encoder
    stamp: Stamp
    trained: bool  # True when this call trained it
    # Set when the data changed but does not load: the previous model is served instead.
    data_error: str | None = None


def _reusable(art: Path, encoder_name: str, runtime: str) -> bool:
    """Whether a retraining may start from ``art``'s encoder export and vectors."""
    old = read_stamp(art)
    return old is not None and (old.encoder, old.runtime, old.versions) == (
        encoder_name,
        runtime,
        library_versions(),
    )


class TrainingStopped(Exception):
    """Raised by a ``step`` callback to stop training between steps; the argument names
    the stage it stopped in."""


def train(
    nlu_data: Path,
    art: Path,
    encoder_name: str,
    runtime: str,
    step: Step = lambda *_: None,
    reuse_old: bool = True,
    tune_epochs: int = EPOCHS,
) -> Loaded:
    """Train and atomically replace the artifact (a crash mid-way leaves the old one).
    With ``reuse_old``, the old artifact's encoder export and vectors are reused when
    they were made by the same encoder and libraries (bot/nlu/reuse.py)."""
    t0 = time.perf_counter()
    # Read the data first: a broken file fails here, before the encoder export (seconds)
    # and before anything is written.
    digest = data_hash(nlu_data)
    td = load_training_data(nlu_data)
    step("data", 1.0)
    art.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(art), dir=art.parent))
    try:
        reusable = reuse_old and _reusable(art, encoder_name, runtime)
        if reusable:
            reuse.copy_export(art, tmp)
        tuning = FaqTuning(td.faqs, tune_epochs, progress=lambda done: step("tune", done))
        inner = load_encoder(encoder_name, runtime, tmp / "encoder", True, tuning)
        # Vectors also hold the languages the detector gave their texts (which parts ran):
        # an artifact of another format may have detected them differently.
        same_format = (old := read_stamp(art)) is not None and old.format == FORMAT
        known = reuse.read_vectors(art, inner.id) if reusable and same_format else {}
        encoder = reuse.RememberingEncoder(inner, known)
        step("encoder", 1.0)
        engine, report = train_engine(td, encoder, step, views=fold_encoders(inner, tuning.views))
        # It must parse before it replaces the old artifact: a damaged reused export that
        # no text needed shows here, and load_or_train retrains from nothing.
        _check_parses(engine, inner)
        encoder.save(tmp)
        stamp = Stamp(
            format=FORMAT,
            data_sha256=digest,
            encoder=encoder_name,
            runtime=runtime,
            encoder_id=encoder.id,
            tune_epochs=tune_epochs,
            versions=library_versions(),
            created=time.time(),
            report=dataclasses.asdict(report)
            | {
                "total_seconds": round(time.perf_counter() - t0, 3),
                "texts_encoded": encoder.encoded,
                "texts_reused": len(encoder.used) - encoder.encoded,
            },
        )
        with (tmp / "engine.pkl").open("wb") as fh:
            pickle.dump(engine, fh, protocol=pickle.HIGHEST_PROTOCOL)
        (tmp / "stamp.json").write_text(stamp.to_json())
        # On disk before the renames: after a power cut the name must not point at files
        # the kernel had not written yet.
        _fsync_tree(tmp)
        prev = _previous(art)
        if art.exists():
            shutil.rmtree(prev, ignore_errors=True)
            art.rename(prev)
        tmp.rename(art)
        _fsync_dir(art.parent)
        shutil.rmtree(prev, ignore_errors=True)
        step("save", 1.0)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # The encoder's files moved with the folder; reopen from the final place.
    final = load_encoder(encoder_name, runtime, art / "encoder", allow_export=False)
    log.info(
        "nlu.trained",
        seconds=stamp.report["total_seconds"],
        threshold=report.chosen_threshold,
        texts_encoded=stamp.report["texts_encoded"],
        texts_reused=stamp.report["texts_reused"],
    )
    if problems := data_warnings(td):
        # `replydesk train` prints them (training text, so only the count here).
        log.warning("nlu.data.warnings", count=len(problems))
    return Loaded(engine, final, stamp, trained=True)


def load(art: Path, encoder_name: str, runtime: str) -> Loaded:
    stamp = read_stamp(art)
    if stamp is None:
        raise FileNotFoundError(f"{art}/stamp.json")
    encoder = load_encoder(encoder_name, runtime, art / "encoder", allow_export=False)
    if encoder.id != stamp.encoder_id:
        raise EncoderChanged(f"encoder {encoder.id} differs from the trained {stamp.encoder_id}")
    with (art / "engine.pkl").open("rb") as fh:
        engine = pickle.load(fh)  # our own file, written by train() above
    # A pickle unpickles even when the classes it names have changed shape under the same
    # FORMAT; one parse finds that here, where load_or_train retrains, not on a message.
    _check_parses(engine, encoder)
    return Loaded(engine, encoder, stamp, trained=False)


def _check_parses(engine: Engine, encoder: Encoder) -> None:
    try:
        engine.analyze(["hello"], encoder, Thresholds(0.5, 0.5, 0.5))
    except Exception as e:
        raise RuntimeError(f"engine.pkl does not parse ({type(e).__name__}: {e})") from e


def load_or_train(
    nlu_data: Path,
    art: Path,
    encoder_name: str,
    runtime: str,
    force: bool = False,
    allow_train: bool = True,
    step: Step = lambda *_: None,
    keep_last_good: bool = False,
    tune_epochs: int = EPOCHS,
) -> Loaded:
    """The current artifact, trained first when missing or stale. With ``keep_last_good``
    (serving), training data that changed but no longer loads (a typo in an edited file)
    leaves the previous model in service, marked with ``data_error``; without it (and when
    there is no usable previous model) the :class:`NluDataError` is raised."""

    def current() -> Loaded | str:
        """The artifact if it is current and loads, else why not."""
        reason = stale_reason(art, nlu_data, encoder_name, runtime, tune_epochs)
        if reason is not None:
            return reason
        try:
            return load(art, encoder_name, runtime)
        except EncoderChanged as e:
            # Its tuned model and export stay usable: load_encoder re-exports a stale
            # export, and vectors are reused only from the same encoder id.
            return f"encoder changed: {e}"
        except Exception as e:  # corrupt or incompatible: rebuild rather than fail
            return f"unloadable: {e}"

    found = "forced" if force else current()
    if isinstance(found, Loaded):
        return found
    if not allow_train:
        raise RuntimeError(f"NLU artifact in {art} is not usable ({found}); run `replydesk train`")
    with _training_lock(art):
        # Processes sharing a data_dir (several workers starting after a data edit) train
        # one at a time; those that waited find the artifact current and load it.
        if not force:
            found = current()
            if isinstance(found, Loaded):
                return found
        log.info("nlu.training", reason=found)
        # A forced or unloadable retraining starts from nothing.
        fresh = force or found.startswith("unloadable")
        reusing = not fresh and _reusable(art, encoder_name, runtime)

        args = (nlu_data, art, encoder_name, runtime, step)
        try:
            try:
                return train(*args, reuse_old=not fresh, tune_epochs=tune_epochs)
            except (NluDataError, TrainingStopped):
                raise
            except Exception as e:
                if not reusing:
                    raise
                # A damaged file in the old artifact (a truncated export) would fail every
                # retraining that starts from it, and so every start: once from nothing.
                log.warning("nlu.training_retry_fresh", error=f"{type(e).__name__}: {e}")
                return train(*args, reuse_old=False, tune_epochs=tune_epochs)
        except NluDataError as e:
            if not (keep_last_good and found == DATA_CHANGED):
                raise
            try:
                previous = load(art, encoder_name, runtime)
            except Exception:
                raise e from None
            # The path and the parser's complaint: training data, not customers' messages.
            log.error("nlu.data_invalid", error=str(e), serving=previous.stamp.data_sha256[:12])
            return dataclasses.replace(previous, data_error=str(e))


@contextlib.contextmanager
def _training_lock(art: Path) -> Iterator[None]:
    """An exclusive flock on ``<art>.lock`` beside the artifact (released on exit, or by
    the kernel if the process dies)."""
    art.parent.mkdir(parents=True, exist_ok=True)
    with art.with_name(art.name + ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            _remove_leftovers(art)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tmp_prefix(art: Path) -> str:
    return f".{art.name}-"


def _previous(art: Path) -> Path:
    """Where the artifact being replaced waits while the new one is renamed in."""
    return art.with_name(art.name + ".old")


def _remove_leftovers(art: Path) -> None:
    """What a training killed mid-way left beside the artifact (with the lock held, no
    training is running): its unfinished folder (about 100 MB, never reused) and, when it
    died between its two renames, the previous artifact, which goes back in place."""
    prev = _previous(art)
    if prev.is_dir() and not art.exists():
        prev.rename(art)
        log.warning("nlu.artifact_restored", path=str(art))
    leftovers = [p for p in art.parent.glob(_tmp_prefix(art) + "*") if p.is_dir()]
    for p in [*leftovers, prev]:
        shutil.rmtree(p, ignore_errors=True)
    if leftovers:
        log.info("nlu.leftovers_removed", folders=len(leftovers))


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    """Make a folder's entries (new files, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def report_of(loaded: Loaded) -> TrainReport | None:
    r = dict(loaded.stamp.report)
    for extra in ("total_seconds", "texts_encoded", "texts_reused"):
        r.pop(extra, None)
    try:
        return TrainReport(**r)
    except TypeError:
        return None
