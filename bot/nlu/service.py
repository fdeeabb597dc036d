"""NluService: what the worker calls. Loads (or trains) the artifact at start, then parses
messages through a micro-batcher; the Rasa backend, when configured, supplies the intent
while FAQ hits and negativity still come from the embedded engine."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from bot.config import NLU_BACKENDS
from bot.metrics import NLU_DATA_INVALID, NLU_PARSE_SECONDS
from bot.nlu.artifact import Loaded, TrainingStopped, artifact_dir, load_or_train
from bot.nlu.encoder import set_threads
from bot.nlu.lang import clean_text
from bot.nlu.types import NluResult

if TYPE_CHECKING:
    from bot.config import NluConfig
    from bot.nlu.batcher import MicroBatcher
    from bot.nlu.engine import Thresholds
    from bot.nlu.rasa import RasaClient

log = structlog.get_logger(__name__)


def resolve_data_dir(cfg: NluConfig, nlu_data_dir: str | None = None) -> Path:
    return Path(nlu_data_dir or cfg.data_path or "nlu_data")


class NluService:
    def __init__(
        self,
        cfg: NluConfig,
        data_dir: str,
        nlu_data_dir: str | None = None,
        *,
        preloaded: Loaded | None = None,
    ) -> None:
        """``preloaded``: an already loaded artifact (tests, benchmarks) instead of data_dir's."""
        if cfg.backend not in NLU_BACKENDS:
            raise ValueError(
                f"nlu.backend: {cfg.backend!r} is not one of {', '.join(NLU_BACKENDS)}"
            )
        self.cfg = cfg
        self.nlu_data = resolve_data_dir(cfg, nlu_data_dir)
        self.artifact = artifact_dir(data_dir)
        self.loaded: Loaded | None = None
        self._preloaded = preloaded
        self.thresholds: Thresholds | None = None
        self._batcher: MicroBatcher[tuple[str, str | None], NluResult] | None = None
        self._rasa: RasaClient | None = None

    @property
    def ready(self) -> bool:
        return self._batcher is not None and self.loaded is not None

    @property
    def encoder_calls(self) -> int:
        return self.loaded.encoder.calls if self.loaded else 0

    async def start(self, force_train: bool = False) -> None:
        """Load the artifact, training it first when missing or stale (in a thread)."""
        if self.ready:
            return
        from bot.nlu.batcher import MicroBatcher
        from bot.nlu.engine import Thresholds

        t0 = time.perf_counter()
        set_threads(self.cfg.threads)
        loaded = self._preloaded
        if loaded is None:
            loaded = await self._load_or_train(force_train)
        self.loaded = loaded
        NLU_DATA_INVALID.set(1 if loaded.data_error else 0)
        await asyncio.to_thread(loaded.encoder.encode, ["warm up"])  # lazy weights
        engine = loaded.engine
        self.thresholds = Thresholds(
            intent=self.cfg.intent_threshold
            if self.cfg.intent_threshold is not None
            else engine.intent.threshold,
            faq=self.cfg.faq_threshold
            if self.cfg.faq_threshold is not None
            else engine.faq.threshold,
            negativity=self.cfg.negativity_threshold,
            answer_guard=self.cfg.answer_guard
            if self.cfg.answer_guard is not None
            else engine.answer_guard,
            # A configured number holds for every language the config does not name.
            faq_by_language=(engine.faq.thresholds if self.cfg.faq_threshold is None else {})
            | self.cfg.faq_thresholds,
        )
        self._batcher = MicroBatcher(self._analyze, self.cfg.batch_max, self.cfg.batch_wait_ms)
        self._batcher.start()
        if self.cfg.backend == "rasa":
            from bot.nlu.rasa import RasaClient

            self._rasa = RasaClient(self.cfg.rasa_url, self.cfg.rasa_timeout_s)
            await self._rasa.start()
        log.info(
            "nlu.ready",
            backend=self.cfg.backend,
            encoder=loaded.encoder.id,
            trained=loaded.trained,
            intent_threshold=self.thresholds.intent,
            answer_guard=self.thresholds.answer_guard,
            seconds=round(time.perf_counter() - t0, 2),
        )

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
            self._batcher = None
        if self._rasa is not None:
            await self._rasa.close()
            self._rasa = None

    def _analyze(self, items: list[tuple[str, str | None]]) -> list[NluResult]:
        assert self.loaded is not None and self.thresholds is not None
        return self.loaded.engine.analyze(
            [t for t, _ in items],
            self.loaded.encoder,
            self.thresholds,
            [lang for _, lang in items],
            self.cfg.faq_top_k,
        )

    def parse_batch_sync(
        self,
        texts: list[str],
        language: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[NluResult]:
        """Blocking batch parse with the embedded engine (CLI, eval, benchmarks), 256 texts
        per engine call so that a large test file does not build one huge batch;
        ``progress`` hears how many texts each call finished."""
        out: list[NluResult] = []
        for start in range(0, len(texts), 256):
            chunk = [clean_text(t) for t in texts[start : start + 256]]
            t0 = time.perf_counter()
            results = self._analyze([(t, language) for t in chunk])
            ms = (time.perf_counter() - t0) * 1000 / len(chunk)
            for r in results:
                r.timing_ms = round(ms, 3)
            out += results
            if progress is not None:
                progress(len(chunk))
        return out

    async def _load_or_train(self, force_train: bool) -> Loaded:
        """load_or_train in a thread. When the start is cancelled (a signal while the first
        start trains), the thread stops at training's next step and is waited for, so
        nothing trains on through shutdown and train() removes its unfinished folder."""
        stop = threading.Event()

        def step(stage: str, done: float) -> None:
            if stop.is_set():
                raise TrainingStopped(stage)

        work = asyncio.ensure_future(
            asyncio.to_thread(
                load_or_train,
                self.nlu_data,
                self.artifact,
                self.cfg.encoder,
                self.cfg.runtime,
                force_train,
                self.cfg.train_on_start,
                step,
                True,  # keep_last_good: a broken data edit must not take workers down
                self.cfg.faq_tuning_epochs,
            )
        )
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            stop.set()
            try:
                await work
            except TrainingStopped as e:
                log.info("nlu.training_stopped", stage=str(e))
            except Exception:  # shutting down anyway; the cancellation is what matters
                log.exception("nlu.start_failed_while_stopping")
            raise

    async def parse(self, text: str, language: str | None = None) -> NluResult:
        if self._batcher is None:
            raise RuntimeError("NluService.start() was not awaited")
        t0 = time.perf_counter()
        # Once, here: a lone surrogate would fail the tokenizer (and the batch it is in),
        # Rasa's JSON and the result's UTF-8 output.
        text = clean_text(text)
        if self._rasa is None:
            result = await self._batcher.submit((text, language))
        else:
            result = await self._parse_rasa(text, language)
        result.timing_ms = round((time.perf_counter() - t0) * 1000, 3)
        NLU_PARSE_SECONDS.labels(backend=result.backend).observe(result.timing_ms / 1000)
        return result

    async def _parse_rasa(self, text: str, language: str | None) -> NluResult:
        from bot.nlu.engine import said_of
        from bot.nlu.rasa import RasaError

        assert self._rasa is not None and self._batcher is not None
        embedded = asyncio.ensure_future(self._batcher.submit((text, language)))
        try:
            rasa = await self._rasa.parse(said_of(text))  # what the embedded engine reads
        except RasaError:
            result = await embedded
            return replace(result, backend="embedded-fallback")
        except BaseException:  # cancelled, or a bug: no embedded parse left unawaited
            embedded.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await embedded
            raise
        result = await embedded
        return replace(
            result,
            intent=rasa.intent,
            confidence=rasa.confidence,
            ranking=rasa.ranking,
            backend="rasa",
        )

    def info(self) -> dict[str, Any]:
        """For health checks and `replydesk parse`: what is loaded and how it was trained."""
        if self.loaded is None:
            return {"ready": False}
        st = self.loaded.stamp
        return {
            "ready": self.ready,
            "backend": self.cfg.backend,
            "encoder": st.encoder_id,
            "data_sha256": st.data_sha256,
            "thresholds": vars(self.thresholds) if self.thresholds else None,
            "trained_at": st.created,
        } | ({"data_error": self.loaded.data_error} if self.loaded.data_error else {})


def build_service(cfg: NluConfig, data_dir: str, nlu_data_dir: str | None = None) -> NluService:
    return NluService(cfg, data_dir, nlu_data_dir)
