"""Platform-neutral data passed between ingest, workers, handlers and the sender.

Nothing here knows which platform an event came from: adapters translate their wire
formats into these types and back.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# One encoder: json.dumps with non-default options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# "activity": a user action that opens a reply window but needs no answer (Weibo menu
# click, QR scan, keyword subscribe).
Kind = Literal["mention", "dm", "follow", "unfollow", "activity"]
MESSAGE_KINDS: frozenset[str] = frozenset({"mention", "dm"})


@dataclass(frozen=True, slots=True)
class Author:
    id: str
    handle: str
    followers: int = 0
    verified: bool = False
    # The platform marks the account as automated (Mastodon ``account.bot``): not answered.
    bot: bool = False


@dataclass(slots=True)
class InboundEvent:
    """One customer action that reached a brand account.

    ``event_id`` is the platform's id (or a derived one where the platform has none,
    e.g. Weibo's sender_id + created_at); with ``platform`` and ``account`` it is the
    dedupe key. ``conversation_id`` groups turns of one thread; ``reply_to_id`` is what
    a public reply must point at (tweet id, status id).
    """

    platform: str
    account: str
    kind: Kind
    event_id: str
    author: Author
    text: str = ""
    language: str | None = None
    conversation_id: str = ""
    reply_to_id: str | None = None
    created_at: float = field(default_factory=time.time)
    received_at: float = field(default_factory=time.time)
    raw: dict[str, Any] = field(default_factory=dict)
    # Who can see the post, in the platform's own terms where it has several (Mastodon:
    # the status visibility); "" where every post reaches the same audience.
    audience: str = ""

    @property
    def is_message(self) -> bool:
        return self.kind in MESSAGE_KINDS

    @property
    def is_public(self) -> bool:
        return self.kind == "mention"

    @property
    def key(self) -> str:
        """Globally unique id of this event across platforms and accounts."""
        return f"{self.platform}:{self.account}:{self.event_id}"

    def to_json(self) -> str:
        # Built by hand: dataclasses.asdict deep-copies ``raw``, which is slow on the
        # ingest hot path.
        d: dict[str, Any] = {f: getattr(self, f) for f in self.__slots__}
        a = self.author
        d["author"] = {
            "id": a.id,
            "handle": a.handle,
            "followers": a.followers,
            "verified": a.verified,
        }
        if a.bot:  # only where a platform says so; most have no such flag
            d["author"]["bot"] = True
        return _ENCODER.encode(d)

    @classmethod
    def from_json(cls, data: str | bytes) -> InboundEvent:
        d = json.loads(data)
        d["author"] = Author(**d["author"])
        return cls(**d)


@dataclass(slots=True)
class OutboundReply:
    """A reply the sender must deliver exactly once.

    ``reply_id`` is chosen by the caller (derived from the inbound event key, or a
    ticket reply id), which makes enqueueing and sending idempotent.
    """

    reply_id: str
    platform: str
    account: str
    kind: Literal["mention", "dm"]
    text: str
    recipient_id: str
    recipient_handle: str = ""
    in_reply_to_id: str | None = None
    conversation_id: str = ""
    ticket_id: str | None = None
    source: Literal["bot", "agent"] = "bot"
    created_at: float = field(default_factory=time.time)
    event_received_at: float | None = None
    # The answered post's ``InboundEvent.audience``: a public reply is never shown to
    # more people than the post it answers.
    audience: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | bytes) -> OutboundReply:
        return cls(**json.loads(data))

    @classmethod
    def answering(cls, event: InboundEvent, text: str, *, n: int = 0) -> OutboundReply:
        """The bot's reply to ``event`` (the n-th one, for the rare multi-part reply)."""
        return cls(
            reply_id=f"{event.key}:{n}",
            platform=event.platform,
            account=event.account,
            kind="mention" if event.kind == "mention" else "dm",
            text=text,
            recipient_id=event.author.id,
            recipient_handle=event.author.handle,
            in_reply_to_id=event.reply_to_id,
            conversation_id=event.conversation_id,
            event_received_at=event.received_at,
            audience=event.audience if event.kind == "mention" else "",
        )
