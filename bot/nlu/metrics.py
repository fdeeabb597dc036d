"""NLU metrics; defined with the others in bot/metrics.py (one registry)."""

from __future__ import annotations

from bot.metrics import NLU_BATCH_SIZE, NLU_PARSE_SECONDS, NLU_RASA_FALLBACKS

__all__ = ["NLU_BATCH_SIZE", "NLU_PARSE_SECONDS", "NLU_RASA_FALLBACKS"]
