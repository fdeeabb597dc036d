"""Fake X API v2: POST /2/tweets and POST /2/dm_conversations/with/{id}/messages."""

from __future__ import annotations

import itertools
import time
import unicodedata

import regex
from aiohttp import web

from bot.platforms import oauth1
from tests.fakes.base import FakePlatform, error_response

# twitter-text v3 as platforms.md §1.8 states it, written apart from bot.textfit so that
# a counting bug there shows up here as X's 403. A link counts 23: a host whose last label
# is a TLD, after an optional scheme (any case). X's TLD list is long (the bot knows only
# a few), so any alphabetic ending is one, except the names reserved never to be TLDs
# (RFC 2606/6761: "help.acme.example" is no link and counts as written). The TLD is the
# host's last label (twitter-text links "acme.com" in "acme.com.example"; with any ending
# a TLD, that rule would make "help.acme" a link here). Like twitter-text, a link starts
# not after a letter, digit, @, $ or #, a bare domain (ASCII or accented Latin) not after
# - _ . /, and its path keeps "(" ")" only in pairs and ends before punctuation.
_LATIN = r"\u00c0-\u024f\u1e00-\u1eff"  # accented Latin: letters of an "ASCII" domain
_TLD = (
    r"(?!(?:example|test|invalid|localhost|local)(?![a-z0-9-]))"
    rf"(?:[a-z]{{2,}}|xn--[a-z0-9-]+)(?![a-z0-9{_LATIN}@+-]|\.[a-z0-9]|:/)"
)
_LABEL = rf"[a-z0-9{_LATIN}](?:[a-z0-9{_LATIN}-]*[a-z0-9{_LATIN}])?"
_PATH = (
    r"(?::\d+)?(?:/(?:(?:[a-z0-9._~:/?#\[\]@!$&'*+,;=%-]|\([^\s()]*\))*"
    r"(?:[a-z0-9_~/#=%+-]|\([^\s()]*\)))?)?"
)
_LINK = regex.compile(
    r"(?<![a-z0-9@＠$#＃])(?:https?://(?:[^\W_]|-)+(?:\.(?:[^\W_]|-)+)*\."
    + _TLD
    + rf"|(?<![-_./{_LATIN}])(?:{_LABEL}\.)+"
    + _TLD
    + ")"
    + _PATH,
    regex.IGNORECASE,
)
_EMOJI = regex.compile(r"\p{Emoji_Presentation}|\p{Extended_Pictographic}\uFE0F|[\u20E3\u200D]")
# DM text: "up to 10,000 characters" (platforms.md §1.6), counted here as code points.
DM_MAX_CHARACTERS = 10_000
_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))  # weight 1; all else 2


def tweet_length(text: str) -> int:
    text = unicodedata.normalize("NFC", text)
    links = _LINK.findall(text)
    weight = 23 * len(links)
    for cluster in regex.findall(r"\X", _LINK.sub("", text)):
        if _EMOJI.search(cluster) or regex.search(r"\p{Regional_Indicator}", cluster):
            weight += 2
        else:
            weight += sum(1 if any(lo <= ord(c) <= hi for lo, hi in _LIGHT) else 2 for c in cluster)
    return weight


class FakeX(FakePlatform):
    def __init__(
        self,
        *,
        token: str,
        user_id: str = "2244994945",
        latency_s: float = 0.0,
        oauth1_keys: tuple[str, str, str, str] | None = None,
    ) -> None:
        super().__init__(latency_s=latency_s)
        self.token = token
        # (consumer key, consumer secret, token, token secret) accepted for OAuth 1.0a
        self.oauth1_keys = oauth1_keys
        self.user_id = user_id
        self._ids = itertools.count(1_700_000_000_000_000_000)
        self.tweets: list[dict[str, object]] = []
        self._texts: set[str] = set()
        self.dms: list[dict[str, object]] = []
        self.rate_remaining: int | None = None  # set to report x-rate-limit-remaining
        self.rate_reset: float = 0.0
        self.app.router.add_post("/2/tweets", self.post_tweet)
        self.app.router.add_post("/2/dm_conversations/with/{participant_id}/messages", self.post_dm)

    def _auth_error(self, request: web.Request) -> web.Response | None:
        if not self._authorized(request):
            return web.json_response(
                {
                    "title": "Unauthorized",
                    "type": "about:blank",
                    "status": 401,
                    "detail": "Unauthorized",
                },
                status=401,
            )
        if request.content_type != "application/json":
            return web.json_response(
                {"title": "Invalid Request", "detail": "JSON body required"}, status=400
            )
        return None

    def _authorized(self, request: web.Request) -> bool:
        value = request.headers.get("Authorization", "")
        if value == f"Bearer {self.token}":
            return True
        fields = oauth1.parse_header(value)
        if not fields or self.oauth1_keys is None:
            return False
        ck, cs, tok, ts = self.oauth1_keys
        if fields.get("oauth_consumer_key") != ck or fields.get("oauth_token") != tok:
            return False
        given = fields.pop("oauth_signature", "")
        url = str(request.url.with_query(None))
        expected = oauth1.signature(request.method, url, {**request.query, **fields}, cs, ts)
        return given == expected

    def _headers(self) -> dict[str, str]:
        if self.rate_remaining is None:
            return {}
        return {
            "x-rate-limit-limit": "100",
            "x-rate-limit-remaining": str(self.rate_remaining),
            "x-rate-limit-reset": str(int(self.rate_reset or time.time() + 900)),
        }

    async def post_tweet(self, request: web.Request) -> web.StreamResponse:
        call = await self.record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        s = self.scripted()
        if s is not None and s.status:
            return error_response(s)
        body = call.json
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("text"), str)
            or set(body) - {"text", "reply"}
        ):
            return web.json_response({"title": "Invalid Request", "detail": "bad body"}, status=400)
        reply = body.get("reply")
        if reply is not None and (
            not isinstance(reply, dict) or not isinstance(reply.get("in_reply_to_tweet_id"), str)
        ):
            return web.json_response(
                {"title": "Invalid Request", "detail": "reply.in_reply_to_tweet_id"}, status=400
            )
        if tweet_length(body["text"]) > 280:
            return web.json_response(
                {"title": "Forbidden", "detail": "Your Tweet text is too long."}, status=403
            )
        if body["text"] in self._texts:
            return web.json_response(
                {
                    "title": "Forbidden",
                    "detail": "You are not allowed to create a Tweet with duplicate content.",
                },
                status=403,
            )
        tid = str(next(self._ids))
        self.tweets.append({"id": tid, **body})
        self._texts.add(body["text"])
        await self.after_record(s, request)
        return web.json_response(
            {"data": {"id": tid, "text": body["text"]}}, status=201, headers=self._headers()
        )

    async def post_dm(self, request: web.Request) -> web.StreamResponse:
        call = await self.record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        s = self.scripted()
        if s is not None and s.status:
            return error_response(s)
        body = call.json
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
            return web.json_response(
                {"title": "Invalid Request", "detail": "text required"}, status=400
            )
        if len(body["text"]) > DM_MAX_CHARACTERS:
            return web.json_response(
                {"title": "Invalid Request", "detail": "text is too long"}, status=400
            )
        pid = request.match_info["participant_id"]
        eid = str(next(self._ids))
        self.dms.append({"participant_id": pid, "id": eid, **body})
        await self.after_record(s, request)
        return web.json_response(
            {"data": {"dm_conversation_id": f"{pid}-{self.user_id}", "dm_event_id": eid}},
            status=201,
            headers=self._headers(),
        )
