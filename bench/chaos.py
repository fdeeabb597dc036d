"""Chaos benchmark: SIGKILL workers in the middle of a burst, then count what every
accepted event became.

    .venv/bin/python -m bench.chaos [--events N] [--kills K] [--freezes F] [--seed S]
                                    [--runs R] [--workers W] [--rate R] [--bursts B]
                                    [--keep]

Per run, on a fresh real ``redis-server`` (AOF, ``appendfsync always`` as the embedded
Redis runs): the fake X, Weibo and Mastodon APIs (tests/fakes/, 50 ms per call, so a kill
often lands while a send is in flight), one ``replydesk serve --role web`` and ``W``
``replydesk serve --role worker`` processes (each runs the inbound worker *and* the
outbox sender: there is no sender-only role) with the real brain and the shared NLU
artifact (tests/support/trained_nlu.py). An open-loop client posts ``N`` signed webhooks
at ``--rate`` per second (X mentions and DMs, Weibo DMs and mentions, Mastodon mentions
and direct posts; FAQ questions, complaints, greetings; a quarter from customers who
wrote before; every 10th posted twice, as platforms retry; with ``--bursts B``, B more
customers each send a greeting, a question and a complaint as DMs 2 ms apart).
Meanwhile ``K`` times, at
seeded random moments, a random working worker is SIGKILLed and restarted after 0.5-3 s;
and ``F`` times the one holding the most replies is frozen (SIGSTOP) for four visibility
timeouts while another works, so its entries are taken over, then let go on (SIGCONT). Rate limits sit just above the reply rate, so
senders sometimes hold replies while waiting for a bucket. ``--keep`` keeps the
processes' logs and the Redis data.

Then, once both consumer groups are quiescent (nothing unread, nothing pending), every
accepted event is checked against docs/architecture.md's guarantees:

* it has an outcome (else **lost**), or it was dead-lettered (``max_attempts``);
* every reply its outcome names was posted exactly once at the fake platform, or is a
  documented "delivery unknown" dead letter (X/Weibo: a sender died between writing the
  send intent and recording the platform's answer; never resent, a human checks);
  Mastodon resends with the same ``Idempotency-Key`` are counted, not duplicates;
* no two posts carry the same reply (**duplicated replies**), no post is unexplained;
* one ticket per conversation (**duplicate tickets**; no agent resolves any here), each
  escalated event on its ticket once;
* each customer's messages decided in stream order: a message recorded in its
  conversation before one the customer sent ahead of it counts as **out of order**.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.report import machine
from bench.scale import train_once
from bot.models import InboundEvent, OutboundReply
from bot.redis import as_str, connect
from tests.fakes import FakeMastodon, FakeWeibo, FakeX
from tests.fakes.harness import (
    MASTO_TOKEN,
    WEIBO_TOKEN,
    X_TOKEN,
    accounts,
    mastodon_signature,
    weibo_query,
    x_signature,
)
from tests.support.redis_server import RedisServer
from tests.support.serve_procs import (
    KEYS,
    ROOT,
    Proc,
    group,
    held,
    ready,
    start,
    stop_all,
    write_config,
)
from tests.support.trained_nlu import nlu_data_dir

X_ME, WEIBO_ME, MASTO_ME = "2244994945", "1902538057", "109000000000000001"
TEXTS = {
    "en": {
        "faq": [
            "what is your return policy?",
            "how long does shipping take?",
            "do you ship internationally?",
            "how do I reset my password?",
            "what payment methods do you accept?",
        ],
        "complaint": [
            "my order arrived broken and nobody answers, terrible service",
            "this is the worst service ever, I'm furious",
            "still no refund after three weeks, this is a scam",
        ],
        "greeting": ["hi there", "hello!", "good morning"],
    },
    "zh": {
        "faq": ["你们的退货政策是什么？", "发货要多久？", "怎么修改密码？"],
        "complaint": ["东西坏了，客服也不理人，太差了", "退款三周了还没到，气死了"],
        "greeting": ["你好", "您好"],
    },
}
KINDS = {"faq": 0.5, "complaint": 0.3, "greeting": 0.2}
# Rate limits a little above the burst's reply rate per platform, so that now and then
# a sender holds replies while it waits for its bucket (where a frozen sender's entries
# are taken over), yet the burst drains in seconds. X's long windows (3 h, 24 h, the
# app's 24 h) keep their defaults: counted exactly, a run stays under them.
LIMITS = {
    "x": {
        "rate_limits": {
            "tweets": {"limit": 150, "window_s": 60, "burst": 2},
            "dm": {"limit": 150, "window_s": 60, "burst": 2},
        }
    },
    "weibo": {"rate_limits": {"messages_reply": {"limit": 360, "window_s": 60, "burst": 4}}},
    "mastodon": {"rate_limits": {"api": {"limit": 360, "window_s": 60, "burst": 4}}},
}


# -- webhooks as each platform sends them -------------------------------------------


@dataclass
class Post:
    platform: str
    path: str
    body: bytes
    headers: dict[str, str]
    weibo: bool = False  # a new signed query per delivery (a signature is single-use)


def x_post(eid: str, user: str, kind: str, text: str) -> Post:
    now = time.time()
    if kind == "mention":
        payload: dict[str, Any] = {
            "for_user_id": X_ME,
            "tweet_create_events": [
                {
                    "created_at": time.strftime("%a %b %d %H:%M:%S +0000 %Y", time.gmtime(now)),
                    "id_str": eid,
                    "text": f"@BotAccount {text}",
                    "truncated": False,
                    "in_reply_to_status_id_str": None,
                    "user": {"id_str": user, "screen_name": f"xu{user}"},
                    "entities": {"user_mentions": [{"id_str": X_ME, "screen_name": "BotAccount"}]},
                }
            ],
        }
    else:
        payload = {
            "for_user_id": X_ME,
            "direct_message_events": [
                {
                    "type": "message_create",
                    "id": eid,
                    "created_timestamp": str(int(now * 1000)),
                    "message_create": {
                        "target": {"recipient_id": X_ME},
                        "sender_id": user,
                        "message_data": {"text": text, "entities": {}},
                    },
                }
            ],
            "users": {user: {"id": user, "screen_name": f"xu{user}"}},
        }
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "x-twitter-webhooks-signature": x_signature(body),
    }
    return Post("x", "/webhooks/x/brandx", body, headers)


def weibo_post(eid: str, user: str, kind: str, text: str) -> Post:
    # Weibo sends no message id: the adapter derives one from sender, time and content.
    payload = {
        "type": "mention" if kind == "mention" else "text",
        "receiver_id": int(WEIBO_ME),
        "sender_id": int(user),
        "sender_screen_name": f"wu{user}",
        "created_at": time.strftime("%a %b %d %H:%M:%S +0000 %Y", time.gmtime()),
        "text": f"{text} #{eid}",  # two posts of one text in one second stay two events
        "data": {},
    }
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Post("weibo", "/webhooks/weibo/brandwb", body, {}, weibo=True)


def mastodon_post(eid: str, user: str, kind: str, text: str) -> Post:
    status = {
        "id": eid,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "in_reply_to_id": None,
        "visibility": "public" if kind == "mention" else "direct",
        "content": f'<p><span class="h-card"><a class="u-url mention">@<span>shop</span></a>'
        f"</span> {text}</p>",
        "account": {"id": user, "acct": f"mu{user}@remote.example"},
        "mentions": [{"id": MASTO_ME, "username": "shop", "acct": "shop"}],
    }
    body = json.dumps({"event": "status.created", "object": status}).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature": mastodon_signature(body)}
    return Post("mastodon", "/webhooks/mastodon/brandm", body, headers)


BUILDERS = {"x": x_post, "weibo": weibo_post, "mastodon": mastodon_post}


def make_posts(n: int, rng: random.Random) -> list[Post]:
    """``n`` events; a quarter from a customer who wrote before (never the same text)."""
    customers: dict[str, list[tuple[str, set[str]]]] = defaultdict(list)
    posts = []
    for i in range(n):
        platform = rng.choice(["x", "weibo", "mastodon"])
        lang = "zh" if platform == "weibo" else "en"
        known = customers[platform]
        if known and rng.random() < 0.25:
            user, said = rng.choice(known)
        else:
            user, said = str(7_000_000 + i), set()
            known.append((user, said))
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        options = [t for t in TEXTS[lang][kind] if t not in said] or [
            t for k in TEXTS[lang].values() for t in k if t not in said
        ]
        if not options:
            continue
        text = rng.choice(options)
        said.add(text)
        channel = rng.choice(["mention", "dm"])
        posts.append(BUILDERS[platform](str(1_900_000_000_000 + i), user, channel, text))
    return posts


def make_bursts(n: int, rng: random.Random) -> list[list[Post]]:
    """``n`` customers who each send three DMs at once: a greeting, a question, a
    complaint (what they are decided on depends on the order)."""
    groups = []
    for b in range(n):
        platform = rng.choice(["x", "weibo", "mastodon"])
        lang = "zh" if platform == "weibo" else "en"
        texts = [rng.choice(TEXTS[lang][k]) for k in ("greeting", "faq", "complaint")]
        user, eid = str(8_000_000 + b), 1_950_000_000_000 + 10 * b
        groups.append(
            [BUILDERS[platform](str(eid + j), user, "dm", t) for j, t in enumerate(texts)]
        )
    return groups


# -- one run -----------------------------------------------------------------------


@dataclass
class Fakes:
    x: FakeX
    weibo: FakeWeibo
    mastodon: FakeMastodon
    runners: list[web.AppRunner] = field(default_factory=list)
    bases: dict[str, str] = field(default_factory=dict)

    @classmethod
    async def start(cls) -> Fakes:
        f = cls(
            FakeX(token=X_TOKEN, latency_s=0.05),
            FakeWeibo(token=WEIBO_TOKEN, latency_s=0.05),
            FakeMastodon(token=MASTO_TOKEN, latency_s=0.05),
        )
        for name, fake in (("x", f.x), ("weibo", f.weibo), ("mastodon", f.mastodon)):
            runner = web.AppRunner(fake.app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            f.runners.append(runner)
            f.bases[name] = f"http://127.0.0.1:{port}"
        f.mastodon.base_url = f.bases["mastodon"]
        return f

    async def close(self) -> None:
        for r in self.runners:
            await r.cleanup()

    def posted(self) -> list[tuple[str, str, str, str]]:
        """Every post the platforms kept: (platform, target, text, platform id); the
        target is what the reply answers (a tweet, a DM partner, a Weibo user, or
        Mastodon's Idempotency-Key, which is the reply id)."""
        out = []
        for t in self.x.tweets:
            target = (t.get("reply") or {}).get("in_reply_to_tweet_id", "")  # type: ignore[union-attr]
            out.append(("x", str(target), str(t["text"]), str(t["id"])))
        for d in self.x.dms:
            out.append(("x", str(d["participant_id"]), str(d["text"]), str(d["id"])))
        for m in self.weibo.messages:
            out.append(("weibo", str(m["receiver_id"]), str(m["text"]), str(m["id"])))
        for s in self.mastodon.statuses:
            out.append(("mastodon", str(s["idempotency_key"]), str(s["content"]), str(s["id"])))
        return out

    def mastodon_resends(self) -> int:
        keys = Counter(
            c.headers.get("Idempotency-Key") for c in self.mastodon.calls_to("/statuses")
        )
        return sum(n - 1 for n in keys.values())


def reply_target(r: OutboundReply) -> str:
    if r.platform == "mastodon":
        return r.reply_id
    if r.platform == "x" and r.kind == "mention":
        return r.in_reply_to_id or ""
    return r.recipient_id


class Run:
    def __init__(self, args: argparse.Namespace, seed: int, tmp: Path) -> None:
        self.args, self.seed, self.tmp = args, seed, tmp
        self.rng = random.Random(seed)
        self.procs: dict[str, Proc] = {}
        self.kills: list[dict[str, Any]] = []
        self.freezes: list[dict[str, Any]] = []
        self.accepted = self.refused = self.posted = 0
        self.t0 = 0.0

    async def spawn(self, name: str, role: str) -> Proc:
        p = await start(name, role, self.config, self.tmp, "bot.cli")
        self.procs[name] = p
        return p

    def live_workers(self) -> list[Proc]:
        return [p for p in self.procs.values() if p.role == "worker" and p.proc.returncode is None]

    async def wait_ready(self, http: aiohttp.ClientSession, p: Proc) -> None:
        deadline = time.monotonic() + 180
        while not await ready(http, p):
            if time.monotonic() > deadline:
                raise SystemExit(f"{p.name} not ready; see {p.log}")
            await asyncio.sleep(0.1)

    async def execute(self) -> dict[str, Any]:
        fakes = await Fakes.start()
        try:
            (self.tmp / "redis").mkdir()
            with RedisServer(str(self.tmp / "redis")) as rs:
                return await self._execute(fakes, rs)
        finally:
            await fakes.close()

    async def _execute(self, fakes: Fakes, rs: RedisServer) -> dict[str, Any]:
        args = self.args
        self.config = self.tmp / "replydesk.yml"
        accts = accounts(fakes.bases["x"], fakes.bases["weibo"], fakes.bases["mastodon"], **LIMITS)
        write_config(
            self.config,
            rs.url,
            "http://127.0.0.1:9",
            {
                "accounts": accts,
                "log_level": "info",
                "redis.data_dir": nlu_data_dir(),
                "dialog.pipeline": "brain",
                "nlu.train_on_start": False,
                "nlu.data_path": str(ROOT / "nlu_data"),
                "worker.visibility_timeout_s": args.visibility_timeout,
                "worker.claim_interval_s": 0.5,
                "worker.block_ms": 200,
            },
        )
        posts = make_posts(args.events, self.rng)
        bursts = make_bursts(args.bursts, self.rng)
        redis = connect(rs.url)
        timeout = aiohttp.ClientTimeout(total=60)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                await self.spawn("web", "web")
                for w in range(args.workers):
                    await self.spawn(f"worker-{w + 1}", "worker")
                for p in list(self.procs.values()):
                    await self.wait_ready(http, p)
                log(
                    f"seed {self.seed}: {len(posts)} events at {args.rate:g}/s, "
                    f"{len(bursts)} bursts of 3, {args.kills} kills"
                )
                self.t0 = time.monotonic()
                span = len(posts) / args.rate
                moments = sorted(self.rng.uniform(0.1 * span, span) for _ in range(args.kills))
                freezes = sorted(self.rng.uniform(0.1 * span, span) for _ in range(args.freezes))
                monitor = asyncio.create_task(self.progress(redis, len(posts)))
                await asyncio.gather(
                    self.burst(http, posts, bursts),
                    self.chaos(http, redis, moments),
                    self.freeze(redis, freezes),
                )
                quiet_from = time.monotonic()
                drained = await self.quiesce(redis)
                drain_s = time.monotonic() - quiet_from
                monitor.cancel()
        finally:
            codes = await stop_all(list(self.procs.values()))
        result = await self.count(redis, fakes)
        await redis.aclose()
        result.update(
            seed=self.seed,
            kills=len(self.kills),
            freezes=len(self.freezes),
            held=sum(k["inbound"] + k["outbox"] for k in self.kills + self.freezes),
            posted=len(posts) + sum(map(len, bursts)),
            refused=self.refused,
            drained=drained,
            drain_s=drain_s,
            exit_codes=codes,
        )
        return result

    async def burst(
        self, http: aiohttp.ClientSession, posts: list[Post], bursts: list[list[Post]]
    ) -> None:
        web_url = self.procs["web"].url
        retries = [p for i, p in enumerate(posts) if i % 10 == 3]
        schedule = [(i / self.args.rate, p) for i, p in enumerate(posts)]
        # A platform retry of an event, a few seconds later.
        schedule += [((i * 10 + 3) / self.args.rate + 2.0, p) for i, p in enumerate(retries)]
        span = len(posts) / self.args.rate
        for trio in bursts:
            at = self.rng.uniform(0.1 * span, span)
            schedule += [(at + 0.002 * j, p) for j, p in enumerate(trio)]
        schedule.sort(key=lambda s: s[0])
        tasks = []
        for at, p in schedule:
            await asyncio.sleep(max(0.0, self.t0 + at - time.monotonic()))
            tasks.append(asyncio.create_task(self.deliver(http, web_url, p)))
        await asyncio.gather(*tasks)

    async def deliver(self, http: aiohttp.ClientSession, base: str, p: Post) -> None:
        params = weibo_query() if p.weibo else None
        async with http.post(base + p.path, data=p.body, headers=p.headers, params=params) as r:
            await r.read()
            self.posted += 1
            if r.status == 200:
                self.accepted += 1
            else:
                self.refused += 1

    async def chaos(self, http: aiohttp.ClientSession, redis: Any, moments: list[float]) -> None:
        restarts: list[asyncio.Task[None]] = []
        for at in moments:
            await asyncio.sleep(max(0.0, self.t0 + at - time.monotonic()))
            while (victim := await self.pick(http)) is None:  # noqa: ASYNC110 - all dead: wait
                await asyncio.sleep(0.2)
            held_in, held_out = await held(redis, victim.proc.pid)
            victim.proc.send_signal(signal.SIGKILL)
            await victim.proc.wait()
            self.kills.append(
                {
                    "at": round(time.monotonic() - self.t0, 1),
                    "who": victim.name,
                    "inbound": held_in,
                    "outbox": held_out,
                }
            )
            log(
                f"  t={time.monotonic() - self.t0:5.1f}s kill -9 {victim.name} (pid {victim.proc.pid}), "
                f"holding {held_in} inbound + {held_out} outbox entries"
            )
            restarts.append(
                asyncio.create_task(self.restart(victim.name, self.rng.uniform(0.5, 3.0)))
            )
        # Every restarted worker is up before the drain is timed.
        await asyncio.gather(*restarts)
        for p in self.procs.values():
            await self.wait_ready(http, p)

    async def pick(self, http: aiohttp.ClientSession) -> Proc | None:
        """A random running worker, one that is ready (working) if there is any."""
        alive = self.live_workers()
        working = [p for p in alive if await responsive(http, p)]
        return self.rng.choice(working or alive) if alive else None

    async def freeze(self, redis: Any, moments: list[float]) -> None:
        """SIGSTOP the worker holding the most replies (while another one works) for
        four visibility timeouts, then SIGCONT: a frozen process whose entries are taken
        over, and which then goes on (docs/architecture.md)."""
        async with aiohttp.ClientSession() as http:
            for at in moments:
                await asyncio.sleep(max(0.0, self.t0 + at - time.monotonic()))
                found = await self.freeze_victim(http, redis, within_s=10.0)
                if found is None:
                    continue
                (held_in, held_out), victim = found
                victim.proc.send_signal(signal.SIGSTOP)
                self.freezes.append({"inbound": held_in, "outbox": held_out})
                log(
                    f"  t={time.monotonic() - self.t0:5.1f}s SIGSTOP {victim.name} "
                    f"(pid {victim.proc.pid}), holding {held_in} inbound + {held_out} outbox "
                    "entries"
                )
                await asyncio.sleep(4 * self.args.visibility_timeout)
                if victim.proc.returncode is None:
                    victim.proc.send_signal(signal.SIGCONT)

    async def freeze_victim(
        self, http: aiohttp.ClientSession, redis: Any, within_s: float
    ) -> tuple[tuple[int, int], Proc] | None:
        """The worker holding the most replies, once one holds any while another worker
        works (to take its entries over); None if that does not happen ``within_s``."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            busy = [
                (await held(redis, p.proc.pid), p)
                for p in self.live_workers()
                if await responsive(http, p)
            ]
            if len(busy) >= 2:
                best = max(busy, key=lambda b: (b[0][1], b[0][0]))
                if best[0][1]:
                    return best
            await asyncio.sleep(0.05)
        return None

    async def restart(self, name: str, after: float) -> None:
        await asyncio.sleep(after)
        with (self.tmp / f"{name}.log").open("a") as f:
            f.write("\n[chaos] restarting\n")
        await self.spawn(name, "worker")

    async def quiesce(self, redis: Any) -> bool:
        """Both groups have read everything and hold nothing pending (checked twice, 1 s
        apart: a reclaim can put an entry back in flight)."""
        deadline = time.monotonic() + self.args.drain_timeout
        calm = 0
        while time.monotonic() < deadline:
            if await settled(redis):
                calm += 1
                if calm >= 2:
                    return True
                await asyncio.sleep(1.0)
                continue
            calm = 0
            await asyncio.sleep(0.2)
        return False

    async def progress(self, redis: Any, total: int) -> None:
        while True:
            await asyncio.sleep(5.0)
            inbound = await group(redis, KEYS.inbound, b"workers")
            outbox = await group(redis, KEYS.outbox, b"senders")
            log(
                f"  t={time.monotonic() - self.t0:5.1f}s posted {self.posted} "
                f"(accepted {self.accepted}) | inbound read {inbound.get('entries-read') or 0} "
                f"pending {inbound['pending']} | outbox len {await redis.xlen(KEYS.outbox)} "
                f"pending {outbox['pending']} | kills {len(self.kills)}/{self.args.kills}"
            )

    async def count(self, redis: Any, fakes: Fakes) -> dict[str, Any]:
        """Every accepted event against the guarantees (see the module docstring)."""
        # Each event once (by its key), as the outcomes are kept.
        entries = await redis.xrange(KEYS.inbound)
        events = dict.fromkeys(InboundEvent.from_json(f[b"event"]).key for _id, f in entries)
        dead_in, dead_out = {}, {}
        for _id, f in await redis.xrange(KEYS.dead):
            d = {as_str(k): as_str(v) for k, v in f.items()}
            if d["source"] == "inbound":
                dead_in[InboundEvent.from_json(d["event"]).key] = d["error"]
            else:
                dead_out[OutboundReply.from_json(d["reply"]).reply_id] = (d["error"], d["reply"])
        decisions: Counter[str] = Counter()
        lost, replies = [], []
        escalated: dict[str, str] = {}
        for key in events:
            raw = await redis.get(KEYS.outcome(key))
            if raw is None:
                if key not in dead_in:
                    lost.append(key)
                continue
            o = json.loads(raw)
            decisions[o["decision"]] += 1
            replies += o["reply_ids"]
            if o["decision"] in ("escalate", "append"):
                escalated[key] = o["ticket_id"]
        posts = fakes.posted()
        by_id = {p[3]: p for p in posts}
        by_target = Counter((p[0], p[1], p[2]) for p in posts)
        explained: set[str] = set()
        sent = unknown_posted = unknown_unposted = dead_other = missing = phantom = 0
        for rid in replies:
            rec = await redis.get(KEYS.sent(rid))
            if rec is not None:
                pid = json.loads(rec)["platform_id"]
                sent += 1
                if pid in by_id:
                    explained.add(pid)
                else:
                    phantom += 1  # recorded as sent, never reached the platform
            elif rid in dead_out:
                error, reply_json = dead_out[rid]
                r = OutboundReply.from_json(reply_json)
                match = [
                    p
                    for p in posts
                    if (p[0], p[1]) == (r.platform, reply_target(r))
                    and p[3] not in explained
                    and p[2] == r.text
                ]
                if "delivery unknown" in error:
                    if match:
                        unknown_posted += 1
                        explained.add(match[0][3])
                    else:
                        unknown_unposted += 1
                else:
                    dead_other += 1
            else:
                missing += 1
        dup_posts = sum(n - 1 for n in by_target.values() if n > 1)
        unexplained = [p for p in posts if p[3] not in explained]
        tickets = await self.tickets(redis, escalated)
        return {
            "out_of_order": await self.out_of_order(redis, entries),
            "events": len(events),
            "accepted_posts": self.accepted,
            "lost": len(lost),
            "lost_keys": lost[:10],
            "dead_inbound": len(dead_in),
            "dead_inbound_errors": Counter(dead_in.values()).most_common(3),
            "decisions": dict(decisions),
            "replies": len(replies),
            "sent": sent,
            "unknown_posted": unknown_posted,
            "unknown_unposted": unknown_unposted,
            "dead_other": dead_other,
            "dead_other_errors": Counter(
                e for e, _ in dead_out.values() if "delivery unknown" not in e
            ).most_common(3),
            "missing_replies": missing,
            "phantom": phantom,
            "dup_replies": dup_posts,
            "unexplained_posts": len(unexplained),
            "unexplained": unexplained[:5],
            "mastodon_resends": fakes.mastodon_resends(),
            **tickets,
        }

    async def out_of_order(self, redis: Any, entries: list[Any]) -> int:
        """Messages the bot recorded in their conversation before one the same customer
        sent ahead of them in the stream (a customer's texts are unique here)."""
        stream_order: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
        for _id, f in entries:
            ev = InboundEvent.from_json(f[b"event"])
            ranks = stream_order[(ev.platform, ev.account, ev.author.id)]
            if ev.is_message:
                ranks.setdefault(ev.text, len(ranks))
        late = 0
        for (platform, account, user), ranks in stream_order.items():
            raw = await redis.get(KEYS.conv(platform, account, user))
            if len(ranks) < 2 or raw is None:
                continue
            turns = json.loads(raw)["turns"]
            order = [
                ranks[t["text"]] for t in turns if t["who"] == "customer" and t["text"] in ranks
            ]
            late += sum(1 for i, r in enumerate(order) if any(r > o for o in order[i + 1 :]))
        return late

    async def tickets(self, redis: Any, escalated: dict[str, str]) -> dict[str, Any]:
        seq = int(await redis.get(KEYS.ns("tickets", "seq")) or 0)
        by_conv: dict[str, list[str]] = defaultdict(list)
        on_ticket: dict[str, Counter[str]] = {}
        for n in range(1, seq + 1):
            tid = f"T{n}"
            h = await redis.hgetall(KEYS.ns("ticket", tid))
            if not h:
                continue  # a number taken by a create that lost its race
            by_conv[as_str(h[b"conv"])].append(tid)
            msgs = await redis.lrange(KEYS.ns("ticket", tid, "msgs"), 0, -1)
            on_ticket[tid] = Counter(
                m["event_key"] for m in map(json.loads, msgs) if m.get("from") == "customer"
            )
        missing = [k for k, tid in escalated.items() if on_ticket.get(tid, Counter())[k] == 0]
        return {
            "tickets": sum(len(v) for v in by_conv.values()),
            "dup_tickets": sum(len(v) - 1 for v in by_conv.values()),
            "dup_ticket_msgs": sum(n - 1 for c in on_ticket.values() for n in c.values() if n > 1),
            "escalations_off_ticket": len(missing),
        }


async def responsive(http: aiohttp.ClientSession, p: Proc) -> bool:
    """Ready, and answering within a second (a frozen process does not)."""
    try:
        return await asyncio.wait_for(ready(http, p), 1.0)
    except (TimeoutError, AssertionError):  # AssertionError: it exited (killed)
        return False


async def settled(redis: Any) -> bool:
    for stream, name in ((KEYS.inbound, b"workers"), (KEYS.outbox, b"senders")):
        g = await group(redis, stream, name)
        if int(g["pending"]) or int(g.get("lag") or 0):
            return False
        if int(g.get("entries-read") or 0) < await redis.xlen(stream):
            return False
    return True


def log(msg: str) -> None:
    print(msg, flush=True)


HEADER = (
    "| run (seed) | kills / freezes | entries held at kill or freeze | events | lost | dead-lettered events "
    "| replies | sent once | delivery unknown: posted / not posted | missing replies "
    "| refused by the platform | duplicated replies | Mastodon idempotent resends | tickets | duplicate tickets "
    "| decided out of order | time to drain |"
)


def row(r: dict[str, Any]) -> str:
    return (
        f"| {r['seed']} | {r['kills']} / {r['freezes']} | {r['held']} | {r['events']} | {r['lost']} "
        f"| {r['dead_inbound']} | {r['replies']} | {r['sent']} "
        f"| {r['unknown_posted']} / {r['unknown_unposted']} | {r['missing_replies']} "
        f"| {r['dead_other']} | {r['dup_replies']} | {r['mastodon_resends']} | {r['tickets']} | {r['dup_tickets']} "
        f"| {r['out_of_order']} | {r['drain_s']:.1f} s{'' if r['drained'] else ' (not drained)'} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--kills", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1, help="runs, seeds S, S+1, ...")
    ap.add_argument("--freezes", type=int, default=0, help="SIGSTOP/SIGCONT a worker")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rate", type=float, default=10.0, help="webhooks per second")
    ap.add_argument("--bursts", type=int, default=0, help="customers sending 3 DMs at once")
    ap.add_argument("--visibility-timeout", type=float, default=2.0)
    ap.add_argument("--drain-timeout", type=float, default=120.0)
    ap.add_argument("--keep", action="store_true", help="keep the logs and Redis data")
    args = ap.parse_args()

    async def run_all() -> list[dict[str, Any]]:
        await train_once()  # the shared artifact: trained if missing, else only checked
        out = []
        for i in range(args.runs):
            tmp = Path(tempfile.mkdtemp(prefix="replydesk-chaos-"))
            try:
                r = await Run(args, args.seed + i, tmp).execute()
            finally:
                if args.keep:
                    log(f"logs and Redis data kept in {tmp}")
                else:
                    shutil.rmtree(tmp, ignore_errors=True)
            out.append(r)
            detail(r)
        return out

    results = asyncio.run(run_all())
    print()
    print(
        f"`.venv/bin/python -m bench.chaos --events {args.events} --kills {args.kills} "
        f"--freezes {args.freezes} "
        f"--seed {args.seed} --runs {args.runs} --workers {args.workers} --rate {args.rate:g}"
        f"{f' --bursts {args.bursts}' if args.bursts else ''}` "
        f"({machine().rsplit(', redis-server', 1)[0]}, redis-server AOF appendfsync always)"
    )
    print()
    print(HEADER)
    print("|" + "---:|" * (HEADER.count("|") - 1))
    for r in results:
        print(row(r))
    bad = sum(
        r["lost"]
        + r["missing_replies"]
        + r["dup_replies"]
        + r["dup_tickets"]
        + r["phantom"]
        + r["dup_ticket_msgs"]
        + r["escalations_off_ticket"]
        + r["unexplained_posts"]
        + r["out_of_order"]
        + (0 if r["drained"] else 1)
        for r in results
    )
    raise SystemExit(1 if bad else 0)


def detail(r: dict[str, Any]) -> None:
    log(
        f"seed {r['seed']}: decisions {r['decisions']}; dead inbound {r['dead_inbound_errors']}; "
        f"other dead replies {r['dead_other']} {r['dead_other_errors']}; phantom sends "
        f"{r['phantom']}; unexplained posts {r['unexplained_posts']} {r['unexplained']}; "
        f"ticket messages twice {r['dup_ticket_msgs']}; escalations not on their ticket "
        f"{r['escalations_off_ticket']}; lost {r['lost_keys']}; refused webhooks "
        f"{r['refused']}; exit codes {r['exit_codes']}"
    )


if __name__ == "__main__":
    main()
