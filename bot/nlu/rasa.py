"""Client for a Rasa server's ``POST /model/parse``, with outage tracking.

Failures are reported once per outage: the first failure logs a warning, and the
recovery is logged once ``RECOVERY_SUCCESSES`` requests in a row have succeeded (a Rasa
failing every other request is one outage, not a pair of lines per message); every
failed message is still counted in ``replydesk_nlu_rasa_fallbacks_total``.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from bot.log import loggable_url
from bot.metrics import NLU_RASA_FALLBACKS
from bot.nlu.types import OUT_OF_SCOPE, IntentScore

log = structlog.get_logger(__name__)

# Rasa's FallbackClassifier intent means "below its threshold": our out_of_scope.
RASA_FALLBACK_INTENT = "nlu_fallback"
RECOVERY_SUCCESSES = 3


class RasaError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # bounded label: timeout | http | connection | bad_response


@dataclass(slots=True)
class RasaParse:
    intent: str
    confidence: float
    ranking: list[IntentScore]


def _score(entry: Any, where: str) -> IntentScore | None:
    """One ``{name, confidence}`` of Rasa's reply (None: no name, as Rasa's empty intent);
    anything else is a bad response, never a crash or a made-up score."""
    if not isinstance(entry, dict):
        raise RasaError("bad_response", f"{where} is not an object")
    name, confidence = entry.get("name"), entry.get("confidence")
    if name is not None and not isinstance(name, str):
        raise RasaError("bad_response", f"{where}.name is not a string")
    if not name and confidence is None:
        return None
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise RasaError("bad_response", f"{where}.confidence is not a number")
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise RasaError("bad_response", f"{where}.confidence is not in [0, 1]")
    if not name:
        return None
    return IntentScore(OUT_OF_SCOPE if name == RASA_FALLBACK_INTENT else name, float(confidence))


def map_response(body: object) -> RasaParse:
    """Rasa's JSON → our intent, confidence and top-5 ranking; RasaError("bad_response")
    for anything else."""
    if not isinstance(body, dict) or not isinstance(body.get("intent"), dict):
        raise RasaError("bad_response", "no intent in reply")
    raw = body.get("intent_ranking") or [body["intent"]]
    if not isinstance(raw, list):
        raise RasaError("bad_response", "intent_ranking is not a list")
    ranking: list[IntentScore] = []
    for i, r in enumerate(raw):
        score = _score(r, f"intent_ranking[{i}]")
        if score is not None and all(s.name != score.name for s in ranking):
            ranking.append(IntentScore(score.name, round(score.confidence, 4)))
    top = _score(body["intent"], "intent") or IntentScore(OUT_OF_SCOPE, 0.0)
    return RasaParse(top.name, top.confidence, ranking[:5])


class RasaClient:
    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url.rstrip("/") + "/model/parse"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.down = False  # inside an outage
        self.failures = 0
        self._successes = 0  # in a row, during an outage

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def parse(self, text: str) -> RasaParse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            async with self._session.post(self.url, json={"text": text}) as resp:
                if resp.status != 200:
                    raise RasaError("http", f"status {resp.status}")
                body = await resp.read()
            try:
                reply = json.loads(body)
            except ValueError as e:  # a proxy's HTML error page, a truncated body
                raise RasaError("bad_response", "not JSON") from e
            result = map_response(reply)
        except RasaError as e:
            self._failed(e)
            raise
        except (TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041 - aiohttp raises either
            err = RasaError("timeout", str(e))
            self._failed(err)
            raise err from e
        except (aiohttp.ClientError, ValueError) as e:
            err = RasaError("connection", type(e).__name__)
            self._failed(err)
            raise err from e
        if self.down:
            self._successes += 1
            if self._successes >= RECOVERY_SUCCESSES:
                log.info(
                    "nlu.rasa.recovered", url=loggable_url(self.url), failed_messages=self.failures
                )
                self.down = False
                self.failures = 0
        return result

    def _failed(self, e: RasaError) -> None:
        NLU_RASA_FALLBACKS.labels(reason=e.reason).inc()
        self.failures += 1
        self._successes = 0
        if not self.down:
            self.down = True
            log.warning("nlu.rasa.down", url=loggable_url(self.url), reason=e.reason, error=str(e))
