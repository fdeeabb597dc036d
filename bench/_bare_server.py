"""The ceiling for bench.ingest: an aiohttp handler that reads the body and returns 200."""

import sys

from aiohttp import web


async def ok(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"ok": True})


app = web.Application()
app.router.add_post("/webhooks/{platform}/{account}", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
