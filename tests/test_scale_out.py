"""Scale-out: two web and two worker processes on one Redis, a burst of events, one
worker SIGKILLed mid-burst, and still exactly one reply per event.

The processes are real ``replydesk`` CLI runs (``serve --role web|worker``) configured by
a YAML file; the platform is a fake generic API in this test process that records every
POST and, as the generic format documents, treats ``Idempotency-Key`` as the reply's
identity.

* ``echo``: the workers run the echo pipeline of tests/support/scale_proc.py (the real
  CLI and app, a deterministic brain: one reply per event), so the assertions are exact;
* ``brain``: unmodified
  ``replydesk serve --role worker`` with the real pipeline; every reply the outcomes name
  is published exactly once and nothing else is. It uses the NLU artifact shared by
  every test run on the machine (tests/support/trained_nlu.py): the first run on a fresh
  machine trains it (about a minute); later runs take about 30 s.

And ``serve --role sender``: a sender-only process beside a web, delivering from the
outbox without the NLU model, then a worker joining (its resident memory is printed).
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.models import OutboundReply
from bot.outbox import enqueue_reply
from bot.pipeline import Outcome
from tests.conftest import GENERIC_SECRET
from tests.support.escalation import event
from tests.support.serve_procs import (
    KEYS,
    ROOT,
    Proc,
    acked,
    group,
    pending_of,
    ready,
    rss_mb,
    start,
    stop_all,
    write_config,
)
from tests.support.trained_nlu import nlu_data_dir
from tests.support.waiting import until
from tests.support.webhooks import generic_event, signed

N_EVENTS = 200
# For the brain: questions it answers from the FAQ bank, greetings, and a complaint.
TEXTS = [
    "what is your return policy?",
    "how long does shipping take?",
    "hi there",
    "你们的退货政策是什么？",
    "my order arrived broken and nobody answers, terrible service",
]


class FakePlatform:
    """The generic platform's reply endpoint: records posts, dedupes on Idempotency-Key."""

    def __init__(self) -> None:
        self.posts: Counter[str] = Counter()
        self.published: dict[str, str] = {}

    async def replies(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        body = await request.json()
        self.posts[key] += 1
        self.published.setdefault(key, body["text"])
        return web.json_response({"id": f"p-{key}"})


@pytest.fixture
async def platform(aiohttp_server: Any) -> tuple[FakePlatform, str]:
    fake = FakePlatform()
    app = web.Application()
    app.router.add_post("/replies", fake.replies)
    server = await aiohttp_server(app)
    return fake, str(server.make_url(""))


async def burst_with_a_killed_worker(
    redis: Any, fake: FakePlatform, config: Path, tmp: Path, *, worker_module: str
) -> dict[str, Outcome]:
    """Run the scenario; returns each event's outcome after everything settled."""
    procs = await asyncio.gather(
        start("web-1", "web", config, tmp, "bot.cli"),
        start("web-2", "web", config, tmp, "bot.cli"),
        start("worker-1", "worker", config, tmp, worker_module),
        start("worker-2", "worker", config, tmp, worker_module),
    )
    webs = [p for p in procs if p.role == "web"]
    victim, survivor = (p for p in procs if p.role == "worker")
    try:
        async with aiohttp.ClientSession() as http:
            for p in procs:
                await until(lambda p=p: ready(http, p), 60, f"{p.name} /readyz")

            sem = asyncio.Semaphore(32)

            async def post(i: int, web_proc: Proc) -> None:
                event = generic_event(f"e{i}", TEXTS[i % len(TEXTS)], author_id=str(5000 + i))
                body, headers = signed(GENERIC_SECRET, event)
                url = web_proc.url + "/webhooks/generic/acme"
                async with sem, http.post(url, data=body, headers=headers) as r:
                    assert r.status == 200, await r.text()

            # First half of the burst, spread over both web processes.
            await asyncio.gather(*(post(i, webs[i % 2]) for i in range(N_EVENTS // 2)))

            # Kill one worker while it holds events.
            async def victim_busy() -> bool:
                return await acked(redis) >= 20 and await pending_of(redis, victim.proc.pid) > 0

            await until(victim_busy, 30, "the victim to hold events after the first 20")
            victim.proc.send_signal(signal.SIGKILL)
            await victim.proc.wait()
            held = await pending_of(redis, victim.proc.pid)
            assert held > 0, "the killed worker held no entries: the kill was not mid-burst"

            # Second half, plus the platform redelivering every 7th event to the other web.
            await asyncio.gather(
                *(post(i, webs[i % 2]) for i in range(N_EVENTS // 2, N_EVENTS)),
                *(post(i, webs[(i + 1) % 2]) for i in range(0, N_EVENTS, 7)),
            )

            async def settled() -> bool:
                inbound = await group(redis, KEYS.inbound, b"workers")
                outbox = await group(redis, KEYS.outbox, b"senders")
                return (
                    await acked(redis) >= N_EVENTS
                    and inbound["pending"] == 0
                    and outbox["pending"] == 0
                    and not outbox.get("lag")
                )

            await until(settled, 90, "every event handled and every reply sent")

            # Every surviving process serves its own /metrics.
            for p in (*webs, survivor):
                async with http.get(p.url + "/metrics") as r:
                    assert r.status == 200 and "replydesk_stream_lag" in await r.text()
    finally:
        codes = await stop_all(procs)
    logs = {p.name: p.log.read_text()[-2000:] for p in procs}
    assert [codes[0], codes[1], codes[3]] == [0, 0, 0], logs  # graceful drain on SIGTERM

    # No loss: every event stored once (redeliveries deduped) and handled once to the end.
    assert await redis.xlen(KEYS.inbound) == N_EVENTS
    assert await redis.xlen(KEYS.dead) == 0, await redis.xrange(KEYS.dead)
    outcomes = {}
    for i in range(N_EVENTS):
        raw = await redis.get(KEYS.outcome(f"generic:acme:e{i}"))
        assert raw is not None, f"event e{i} has no outcome"
        outcomes[f"e{i}"] = Outcome.from_json(raw)
    # No double reply: the platform saw each reply id the outcomes name, once (a second
    # POST with the same Idempotency-Key is an idempotent resend the platform absorbs).
    expected = {r for o in outcomes.values() for r in o.reply_ids}
    odd = set(fake.published) ^ expected
    events = {r.split(":")[2] for r in odd}
    assert not odd, {e: (outcomes[e].decision, outcomes[e].reply_ids) for e in sorted(events)}
    assert set(Counter(fake.posts.values())) <= {1, 2}, fake.posts
    return outcomes


@pytest.mark.timeout(150)
async def test_echo_pipeline_two_webs_two_workers_kill_one(
    redis_server: Any, redis: Any, platform: tuple[FakePlatform, str], tmp_path: Path
) -> None:
    fake, api_base = platform
    config = tmp_path / "replydesk.yml"
    write_config(config, redis_server.url, api_base, {})
    outcomes = await burst_with_a_killed_worker(
        redis, fake, config, tmp_path, worker_module="tests.support.scale_proc"
    )
    assert all(o.decision == "answer" and len(o.reply_ids) == 1 for o in outcomes.values())
    assert len(fake.published) == N_EVENTS
    assert all(fake.published[f"generic:acme:{e}:0"] == f"echo {e}" for e in outcomes)
    handled = await redis.hgetall(KEYS.ns("test", "handled"))
    assert len(handled) == N_EVENTS  # only the killed worker's events ran twice


async def _brain_config() -> dict[str, Any]:
    """Config for workers with the real pipeline on the shared NLU artifact."""
    from bot.config import NluConfig
    from bot.nlu.artifact import load_or_train

    data_dir = nlu_data_dir()
    cfg = NluConfig()
    # Train (first run on this machine) or just check the shared artifact, off the loop.
    await asyncio.to_thread(
        load_or_train, ROOT / "nlu_data", Path(data_dir) / "nlu", cfg.encoder, cfg.runtime
    )
    return {
        "redis.data_dir": data_dir,
        "dialog.pipeline": "brain",
        "nlu.train_on_start": False,
        "nlu.data_path": str(ROOT / "nlu_data"),
    }


@pytest.mark.timeout(300)
async def test_real_pipeline_two_webs_two_workers_kill_one(
    redis_server: Any, redis: Any, platform: tuple[FakePlatform, str], tmp_path: Path
) -> None:
    fake, api_base = platform
    config = tmp_path / "replydesk.yml"
    write_config(config, redis_server.url, api_base, await _brain_config())
    outcomes = await burst_with_a_killed_worker(
        redis, fake, config, tmp_path, worker_module="bot.cli"
    )
    decisions = Counter(o.decision for o in outcomes.values())
    assert decisions["answer"] >= N_EVENTS // 2, decisions  # FAQ questions and greetings
    assert decisions["escalate"] >= 1, decisions  # the complaints


@pytest.mark.timeout(240)
async def test_a_sender_process_delivers_without_the_model(
    redis_server: Any, redis: Any, platform: tuple[FakePlatform, str], tmp_path: Path
) -> None:
    """``serve --role sender``: the outbox sender alone, for more sending or sending
    apart from the rest. It is ready without an NLU model, takes no inbound event and
    delivers what is queued; a worker started later (the real pipeline, which still
    sends too) handles the events that waited. Resident memory is printed, not asserted."""
    fake, api_base = platform
    config = tmp_path / "replydesk.yml"
    write_config(config, redis_server.url, api_base, await _brain_config())
    web, sender = await asyncio.gather(
        start("web", "web", config, tmp_path, "bot.cli"),
        start("sender", "sender", config, tmp_path, "bot.cli"),
    )
    procs = [web, sender]
    try:
        async with aiohttp.ClientSession() as http:
            for p in procs:
                await until(lambda p=p: ready(http, p), 60, f"{p.name} /readyz")
            async with http.get(sender.url + "/readyz") as r:
                assert (await r.json())["checks"] == {"redis": True}  # no pipeline to wait for
            async with http.get(sender.url + "/healthz") as r:
                assert (await r.json()) == {"status": "ok", "role": "sender"}

            n = 10
            for i in range(n):
                body, headers = signed(GENERIC_SECRET, generic_event(f"e{i}", TEXTS[i % 5]))
                url = web.url + "/webhooks/generic/acme"
                async with http.post(url, data=body, headers=headers) as r:
                    assert r.status == 200
            queued = [
                OutboundReply.answering(event(event_id=f"q{i}"), f"queued {i}") for i in range(n)
            ]
            for reply in queued:
                await enqueue_reply(redis, KEYS, reply)
            await until(lambda: len(fake.published) == n, 30, "the queued replies to be sent")
            assert fake.published == {r.reply_id: r.text for r in queued}
            consumers = await redis.xinfo_consumers(KEYS.outbox, "senders")
            assert all(f"-{sender.proc.pid}-" in c["name"].decode() for c in consumers)
            assert await acked(redis) == 0  # nobody took an inbound event
            rss = {p.name: rss_mb(p) for p in procs}

            worker = await start("worker", "worker", config, tmp_path, "bot.cli")
            procs.append(worker)
            await until(lambda: ready(http, worker), 90, "worker /readyz")

            async def settled() -> bool:
                outbox = await group(redis, KEYS.outbox, b"senders")
                return await acked(redis) >= n and outbox["pending"] == 0 and not outbox.get("lag")

            await until(settled, 60, "the waiting events handled and their replies sent")
            rss["worker"] = rss_mb(worker)
    finally:
        codes = await stop_all(procs)
    assert codes == [0] * len(procs), {p.name: p.log.read_text()[-2000:] for p in procs}
    named = {r.reply_id for r in queued}
    for i in range(n):
        raw = await redis.get(KEYS.outcome(f"generic:acme:e{i}"))
        assert raw is not None, f"event e{i} has no outcome"
        named |= set(Outcome.from_json(raw).reply_ids)
    assert set(fake.published) == named and set(fake.posts.values()) == {1}, fake.posts
    print("\nresident memory (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
