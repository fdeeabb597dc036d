"""Security review of the order-lookup hook: the request names the customer and carries
the shop's token, so it goes to the configured URL only; the answer is bounded."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.orders import OrderLookup, OrderLookupError


@pytest.fixture
async def servers(aiohttp_server: Any) -> Any:
    """A shop that redirects /moved to an elsewhere server, which records what it gets."""
    elsewhere_seen: list[dict[str, str]] = []

    async def elsewhere(request: web.Request) -> web.Response:
        elsewhere_seen.append(dict(request.query))
        return web.json_response({"order": "A12345", "status": "shipped"})

    other = await aiohttp_server(_app(("/orders", elsewhere)))

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(other.make_url("/orders")) + "?" + request.query_string)

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"status": "shipped", "pad": "')
        for _ in range(64):  # 4 MiB, chunked: no Content-Length to refuse early
            await resp.write(b"x" * 64 * 1024)
        await resp.write(b'"}')
        return resp

    async def fine(request: web.Request) -> web.Response:
        return web.json_response({"order": "A12345", "status": "shipped"})

    shop = await aiohttp_server(_app(("/moved", moved), ("/huge", huge), ("/orders", fine)))
    return shop, elsewhere_seen


def _app(*routes: Any) -> web.Application:
    app = web.Application()
    for path, handler in routes:
        app.router.add_get(path, handler)
    return app


async def test_a_redirect_is_not_followed_with_the_customer(servers: Any) -> None:
    shop, elsewhere_seen = servers
    async with aiohttp.ClientSession() as http:
        lookup = OrderLookup(http, str(shop.make_url("/moved")), "shop-token")
        with pytest.raises(OrderLookupError):
            await lookup.lookup("A12345", platform="x", customer_id="42", customer_handle="al")
    assert elsewhere_seen == []  # never told who asked about which order


async def test_an_answer_over_the_cap_is_an_error(servers: Any) -> None:
    shop, _ = servers
    async with aiohttp.ClientSession() as http:
        lookup = OrderLookup(http, str(shop.make_url("/huge")))
        with pytest.raises(OrderLookupError, match="answer over"):
            await lookup.lookup("A12345", platform="x", customer_id="42")
        ok = OrderLookup(http, str(shop.make_url("/orders")))
        info = await ok.lookup("A12345", platform="x", customer_id="42")
        assert info is not None and info.status == "shipped"
