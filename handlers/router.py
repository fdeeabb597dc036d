"""An aiogram-style router: handlers register for intents; the first decision wins.

A handler is a plain or async function that names the arguments it needs; the
dispatcher passes only those (the signature is read once, at registration)::

    router = Router("greetings")

    @router.intent("greet")
    def greet(say):
        return Answer(say("greet"))

Returning None lets the next handler try. ``@router.intent()`` with no names matches
every intent. Routers nest with :meth:`Router.include`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handlers.decisions import Decision

# What a handler may ask for; the pipeline provides these by name.
ARGUMENTS = frozenset(
    {"message", "nlu", "conversation", "account", "orders", "say", "language", "settings"}
)


@dataclass(frozen=True, slots=True)
class _Handler:
    fn: Callable[..., Any]
    intents: frozenset[str]  # empty: any intent
    params: tuple[str, ...]
    is_async: bool
    rule: str

    def matches(self, intent: str) -> bool:
        return not self.intents or intent in self.intents


class Router:
    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: list[_Handler | Router] = []

    def intent(
        self, *names: str, rule: str | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            params = tuple(inspect.signature(fn).parameters)
            unknown = [p for p in params if p not in ARGUMENTS]
            if unknown:
                raise TypeError(
                    f"handler {fn.__qualname__} asks for {unknown}; available: {sorted(ARGUMENTS)}"
                )
            self._handlers.append(
                _Handler(
                    fn,
                    frozenset(names),
                    params,
                    inspect.iscoroutinefunction(fn),
                    rule or f"{self.name}.{fn.__name__}",
                )
            )
            return fn

        return register

    def include(self, *routers: Router) -> Router:
        self._handlers.extend(routers)
        return self

    async def dispatch(self, intent: str, **available: Any) -> Decision | None:
        """The first decision of a handler registered for ``intent``, or None."""
        for h in self._handlers:
            if isinstance(h, Router):
                d = await h.dispatch(intent, **available)
            elif h.matches(intent):
                kwargs = {p: available.get(p) for p in h.params}
                d = await h.fn(**kwargs) if h.is_async else h.fn(**kwargs)
                if d is not None:
                    d.reasons = {"rule": h.rule, **d.reasons}
            else:
                continue
            if d is not None:
                return d
        return None
