"""Language understanding: intent + calibrated confidence, FAQ hits, negativity, language.

Importing this package is cheap; numpy, scikit-learn and the encoder are loaded only when
a service starts (``build_service(cfg, data_dir).start()``). See docs/nlu.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.nlu.types import OUT_OF_SCOPE, FaqHit, IntentScore, NluResult

if TYPE_CHECKING:
    from bot.nlu.service import NluService, build_service

__all__ = [
    "OUT_OF_SCOPE",
    "FaqHit",
    "IntentScore",
    "NluResult",
    "NluService",
    "build_service",
]


def __getattr__(name: str) -> Any:
    if name in ("NluService", "build_service"):
        from bot.nlu import service

        return getattr(service, name)
    raise AttributeError(name)
