"""A trained NLU artifact shared by every test run on this machine.

The artifact is keyed by the hash of nlu_data and the encoder (bot.nlu.artifact), so it
is trained once (~45 s) and then only loaded; a change to the data retrains it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def nlu_data_dir() -> str:
    """A data_dir whose artifact folder holds the trained model (REPLYDESK_TEST_NLU_DIR)."""
    d = Path(
        os.environ.get("REPLYDESK_TEST_NLU_DIR")
        or Path(tempfile.gettempdir()) / "replydesk-test-nlu"
    )
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def add_example(data: Path, text: str) -> None:
    """Append a thanks example to a copy of nlu_data/ (a data edit: the next start retrains)."""
    smalltalk = data / "nlu" / "smalltalk.yml"
    smalltalk.write_text(smalltalk.read_text(encoding="utf-8") + f"    - {text}\n", "utf-8")


def forbid_training(monkeypatch: pytest.MonkeyPatch, why: str) -> None:
    """Make any training in this test fail with ``why``: what it checks must load."""
    from bot.nlu import artifact

    def no_training(*a: object, **k: object) -> None:
        raise AssertionError(why)

    monkeypatch.setattr(artifact, "train", no_training)
