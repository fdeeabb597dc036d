"""NLU fixtures: the model is trained once per test session (into the session's tmp dir)
and reused. Use them from a test module with:

    pytest_plugins = ["tests.conftest_nlu"]
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import NluConfig
from bot.nlu.artifact import Loaded, load_or_train
from bot.nlu.service import NluService

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NLU_DATA = Path(__file__).resolve().parent.parent / "nlu_data"


@pytest.fixture(scope="session")
def nlu_data_dir() -> Path:
    return NLU_DATA


@pytest.fixture(scope="session")
def nlu_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``data_dir`` for NluService: the artifact lives in ``<it>/nlu``. A fixed folder
    under the session's base temp, so every module importing this shares one training."""
    return tmp_path_factory.getbasetemp() / "nlu-data-dir"


@pytest.fixture(scope="session")
def nlu_artifact(nlu_data_root: Path) -> Loaded:
    cfg = NluConfig()
    loaded = load_or_train(NLU_DATA, nlu_data_root / "nlu", cfg.encoder, cfg.runtime)
    loaded.encoder.encode(["warm up"])  # lazy weights, once per session
    return loaded


@pytest.fixture
async def nlu_service(nlu_artifact: Loaded, nlu_data_root: Path) -> AsyncIterator[NluService]:
    svc = NluService(
        NluConfig(train_on_start=False), str(nlu_data_root), str(NLU_DATA), preloaded=nlu_artifact
    )
    await svc.start()
    yield svc
    await svc.close()
