"""Client for a Rasa server's ``POST /model/parse``, with outage tracking.

Failures are reported once per outage: the first failure logs a warning, the first
success after it logs the recovery; every failed message is still counted in
``replydesk_nlu_rasa_fallbacks_total``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import structlog

from bot.metrics import NLU_RASA_FALLBACKS
from bot.nlu.types import OUT_OF_SCOPE, IntentScore

log = structlog.get_logger(__name__)

# Rasa's FallbackClassifier intent means "below its threshold": our out_of_scope.
RASA_FALLBACK_INTENT = "nlu_fallback"


class RasaError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # bounded label: timeout | http | connection | bad_response


@dataclass(slots=True)
class RasaParse:
    intent: str
    confidence: float
    ranking: list[IntentScore]


def map_response(body: object) -> RasaParse:
    """Rasa's JSON → our intent, confidence and top-5 ranking."""
    if not isinstance(body, dict) or not isinstance(body.get("intent"), dict):
        raise RasaError("bad_response", "no intent in reply")
    raw = body.get("intent_ranking") or [body["intent"]]
    ranking: list[IntentScore] = []
    for r in raw:
        name = r.get("name")
        if not name:
            continue
        name = OUT_OF_SCOPE if name == RASA_FALLBACK_INTENT else str(name)
        if any(s.name == name for s in ranking):
            continue
        ranking.append(IntentScore(name, round(float(r.get("confidence") or 0.0), 4)))
    top = body["intent"]
    name = top.get("name") or OUT_OF_SCOPE
    name = OUT_OF_SCOPE if name == RASA_FALLBACK_INTENT else str(name)
    return RasaParse(name, float(top.get("confidence") or 0.0), ranking[:5])


class RasaClient:
    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url.rstrip("/") + "/model/parse"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.down = False  # inside an outage
        self.failures = 0

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
                result = map_response(await resp.json(content_type=None))
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
            log.info("nlu.rasa.recovered", url=self.url, failed_messages=self.failures)
            self.down = False
            self.failures = 0
        return result

    def _failed(self, e: RasaError) -> None:
        NLU_RASA_FALLBACKS.labels(reason=e.reason).inc()
        self.failures += 1
        if not self.down:
            self.down = True
            log.warning("nlu.rasa.down", url=self.url, reason=e.reason, error=str(e))
