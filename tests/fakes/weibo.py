"""Fake Weibo fan-service API: POST /2/messages/reply.json (form, data = URL-encoded JSON)."""

from __future__ import annotations

import itertools
import json
from urllib.parse import parse_qs

from aiohttp import web

from tests.fakes.base import FakePlatform, error_response


def weibo_error(code: int, message: str, status: int = 400) -> web.Response:
    return web.json_response(
        {"error": message, "error_code": code, "request": "/2/messages/reply.json"}, status=status
    )


# Weibo's unit is unconfirmed (platforms.md §2.7): hold replies to the same conservative
# count as the bot, UTF-16 code units; a message must be shorter than 300 (§2.4, §2.7).
MAX_LENGTH = 299


def message_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class FakeWeibo(FakePlatform):
    def __init__(self, *, token: str, latency_s: float = 0.0) -> None:
        super().__init__(latency_s=latency_s)
        self.token = token
        self._ids = itertools.count(4_000_000_000_000_000)
        self.messages: list[dict[str, object]] = []
        self.app.router.add_post("/2/messages/reply.json", self.reply)

    async def reply(self, request: web.Request) -> web.StreamResponse:
        call = await self.record(request)
        token = request.query.get("access_token")
        if token != self.token:
            return weibo_error(21332, "invalid_access_token", status=401)
        if request.content_type != "application/x-www-form-urlencoded":
            return weibo_error(10008, "param error: form body required")
        s = self.scripted()
        if s is not None and s.status:
            return error_response(s)
        form = {k: v[0] for k, v in parse_qs(call.body.decode(), keep_blank_values=True).items()}
        if (
            set(form) - {"receiver_id", "type", "data", "save_sender_box"}
            or not form.get("receiver_id", "").isdigit()
        ):
            return weibo_error(10008, "param error")
        if form.get("type") != "text":
            return weibo_error(10008, "param error: type")
        try:
            data = json.loads(form["data"])
        except (KeyError, json.JSONDecodeError):
            return weibo_error(10008, "param error: data must be URL-encoded JSON")
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str) or not text or message_length(text) > MAX_LENGTH:
            return weibo_error(21325, "text must be shorter than 300 characters")
        mid = str(next(self._ids))
        self.messages.append(
            {"id": mid, "receiver_id": form["receiver_id"], "text": text, "raw": call.body}
        )
        await self.after_record(s, request)
        return web.json_response(
            {"result": True, "id": mid, "receiver_id": int(form["receiver_id"])}
        )
