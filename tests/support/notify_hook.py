"""A chat webhook (Slack-compatible) for the ops notification tests: it records what it
was sent and refuses the first posts, as an outage would."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def hook_server(
    aiohttp_server: Any, refuse: dict[str, int], *, status: int = 503
) -> tuple[Any, list[Any]]:
    """A webhook that answers ``status`` to the first ``refuse["n"]`` posts, then accepts
    and keeps each JSON body; ``refuse["seen"]`` counts every post."""
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        refuse["seen"] = refuse.get("seen", 0) + 1
        if refuse["n"] > 0:
            refuse["n"] -= 1
            return web.Response(status=status)
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/hook/{token}", hook)
    return await aiohttp_server(app), got
