"""Stream workers: outcomes stored before ack, crash recovery, dead letters, shutdown."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bot import metrics
from bot.config import WorkerConfig
from bot.models import Author, InboundEvent
from bot.pipeline import Outcome, PassThroughPipeline
from bot.streams import list_dead, replay_dead, stream_stats
from bot.worker import InboundWorker
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[1]
FAST = WorkerConfig(
    concurrency=4, visibility_timeout_s=0.3, block_ms=50, claim_interval_s=0.1, max_attempts=3
)


def event(eid: str, text: str = "hi") -> InboundEvent:
    return InboundEvent(
        platform="generic",
        account="acme",
        kind="dm",
        event_id=eid,
        author=Author("42", "alice"),
        text=text,
    )


async def add(redis, keys, ev: InboundEvent) -> str:
    return (await redis.xadd(keys.inbound, {"event": ev.to_json()})).decode()


class Flaky:
    """Fails the first ``fail`` times per event, then succeeds."""

    ready = True

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.calls: dict[str, int] = {}

    async def handle(self, ev: InboundEvent) -> Outcome:
        n = self.calls[ev.event_id] = self.calls.get(ev.event_id, 0) + 1
        if n <= self.fail:
            raise RuntimeError(f"boom {n}")
        return Outcome(decision="recorded")


class Slow:
    """Takes ``seconds`` per event, counting how often each event started."""

    ready = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: Counter[str] = Counter()

    async def handle(self, ev: InboundEvent) -> Outcome:
        self.calls[ev.event_id] += 1
        await asyncio.sleep(self.seconds)
        return Outcome(decision="recorded")


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def run_worker(worker, stop):
    return asyncio.create_task(worker.run(stop))


async def test_outcome_stored_then_acked(redis, keys):
    worker = InboundWorker(redis, keys, FAST, PassThroughPipeline())
    stop = asyncio.Event()
    task = await run_worker(worker, stop)
    for i in range(5):
        await add(redis, keys, event(f"e{i}"))
    await until(lambda: redis.exists(*[keys.outcome(event(f"e{i}").key) for i in range(5)]), 10)
    await until(lambda: _no_pending(redis, keys))
    stop.set()
    await task
    raw = await redis.get(keys.outcome(event("e0").key))
    assert Outcome.from_json(raw).decision == "recorded"


async def _no_pending(redis, keys) -> bool:
    _, _, pending = await stream_stats(redis, keys.inbound, keys.WORKERS)
    return pending == 0


async def test_failures_retry_then_succeed(redis, keys):
    pipe = Flaky(fail=2)
    worker = InboundWorker(redis, keys, FAST, pipe)
    stop = asyncio.Event()
    task = await run_worker(worker, stop)
    await add(redis, keys, event("f1"))
    await until(lambda: redis.exists(keys.outcome(event("f1").key)))
    stop.set()
    await task
    assert pipe.calls["f1"] == 3
    assert await redis.xlen(keys.dead) == 0


async def test_dead_letter_and_replay(redis, keys):
    pipe = Flaky(fail=10)
    worker = InboundWorker(redis, keys, FAST, pipe)
    stop = asyncio.Event()
    task = await run_worker(worker, stop)
    await add(redis, keys, event("d1"))
    await until(lambda: redis.xlen(keys.dead))
    stop.set()
    await task
    assert pipe.calls["d1"] == FAST.max_attempts
    [(dead_id, fields)] = await list_dead(redis, keys)
    assert fields["source"] == "inbound"
    assert "boom 3" in fields["error"]
    assert await _no_pending(redis, keys)  # acknowledged on the inbound stream
    assert not await redis.exists(keys.outcome(event("d1").key))

    # after the cause is fixed, an operator replays it
    pipe.fail = 0
    pipe.calls.clear()
    await replay_dead(redis, keys, dead_id)
    assert await redis.xlen(keys.dead) == 0
    stop = asyncio.Event()
    task = await run_worker(InboundWorker(redis, keys, FAST, pipe), stop)
    await until(lambda: redis.exists(keys.outcome(event("d1").key)))
    stop.set()
    await task


async def test_unparsable_entry_goes_dead(redis, keys):
    worker = InboundWorker(redis, keys, FAST, PassThroughPipeline())
    stop = asyncio.Event()
    task = await run_worker(worker, stop)
    await redis.xadd(keys.inbound, {"event": "{broken"})
    await until(lambda: redis.xlen(keys.dead))
    stop.set()
    await task
    [(_, fields)] = await list_dead(redis, keys)
    assert fields["error"] == "unparsable event"


async def test_done_event_is_not_run_again(redis, keys):
    """A worker that died after storing the outcome but before XACK: the next one only acks."""
    pipe = Flaky(fail=0)
    ev = event("done1")
    await redis.set(keys.outcome(ev.key), Outcome(decision="answer").to_json())
    worker = InboundWorker(redis, keys, FAST, pipe)
    stop = asyncio.Event()
    task = await run_worker(worker, stop)
    await add(redis, keys, ev)
    await until(lambda: _no_pending_and_read(redis, keys))
    stop.set()
    await task
    assert pipe.calls == {}


async def _no_pending_and_read(redis, keys) -> bool:
    length, lag, pending = await stream_stats(redis, keys.inbound, keys.WORKERS)
    return length == 1 and lag == 0 and pending == 0


def _spawn_worker(url: str, slow: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker_proc", url, str(slow)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


async def test_sigkill_mid_event_is_reclaimed_and_effect_happens_once(redis, keys, redis_server):
    victim = _spawn_worker(redis_server.url, slow=30)
    try:
        await add(redis, keys, event("k1", "kill me"))
        started = keys.ns("test", "started")
        await until(lambda: redis.hget(started, "k1"))
        victim.kill()
        victim.wait(5)
        # A new worker reclaims the pending event after the visibility timeout.
        rescuer = _spawn_worker(redis_server.url, slow=0)
        try:
            await until(lambda: redis.exists(keys.outcome(event("k1").key)), 20)
            await until(lambda: _no_pending(redis, keys))
        finally:
            rescuer.terminate()
            rescuer.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert int(await redis.hget(started, "k1")) == 2  # run twice...
    assert await redis.xlen(keys.outbox) == 1  # ...but one reply


async def test_sigterm_drains_in_flight_work(redis, keys, redis_server):
    proc = _spawn_worker(redis_server.url, slow=1.0)
    try:
        await add(redis, keys, event("t1"))
        await until(lambda: redis.hget(keys.ns("test", "started"), "t1"))
        proc.terminate()  # SIGTERM while the event is in flight
        out, _ = await asyncio.to_thread(proc.communicate, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "drained" in out
    assert await redis.exists(keys.outcome(event("t1").key))
    assert await _no_pending(redis, keys)


async def test_redis_restart_with_aof_loses_nothing_accepted(
    aiohttp_client, settings, redis_server, redis, keys
):
    from bot.app import build_app
    from tests.conftest import GENERIC_SECRET
    from tests.support.webhooks import generic_event, signed

    client = await aiohttp_client(build_app(settings, role="web"))
    accepted = []
    for i in range(50):
        body, headers = signed(GENERIC_SECRET, generic_event(f"aof{i}"))
        if (await client.post("/webhooks/generic/acme", data=body, headers=headers)).status == 200:
            accepted.append(f"aof{i}")
    assert len(accepted) == 50
    redis_server.restart(kill=True)  # SIGKILL: only the AOF survives
    await redis.connection_pool.disconnect()
    ids = [
        InboundEvent.from_json(f[b"event"]).event_id for _, f in await redis.xrange(keys.inbound)
    ]
    assert ids == accepted
    # dedupe keys survived too: a retry after the restart is not stored twice
    body, headers = signed(GENERIC_SECRET, generic_event("aof0"))
    resp = await client.post("/webhooks/generic/acme", data=body, headers=headers)
    assert resp.status == 200
    assert await redis.xlen(keys.inbound) == 50


@pytest.mark.parametrize("workers", [2])
async def test_many_workers_share_the_group(redis, keys, workers):
    pipe = Flaky(fail=0)
    stop = asyncio.Event()
    tasks = [await run_worker(InboundWorker(redis, keys, FAST, pipe), stop) for _ in range(workers)]
    for i in range(100):
        await add(redis, keys, event(f"m{i}"))
    await until(lambda: _count_outcomes(redis, keys, 100))
    stop.set()
    await asyncio.gather(*tasks)
    assert all(v == 1 for v in pipe.calls.values()) and len(pipe.calls) == 100


async def _count_outcomes(redis, keys, n: int) -> bool:
    found = 0
    async for _ in redis.scan_iter(match=keys.outcome("*")):
        found += 1
    return found == n


async def test_a_slow_live_handler_keeps_its_entry(redis, keys):
    """A handler four visibility timeouts long is not taken over by an idle second
    worker: its consumer renews the claim while the handler runs."""
    pipe = Slow(seconds=4 * FAST.visibility_timeout_s)
    stop = asyncio.Event()
    tasks = [await run_worker(InboundWorker(redis, keys, FAST, pipe, consumer="w-a"), stop)]
    try:
        await add(redis, keys, event("s1"))
        await until(lambda: pipe.calls["s1"] == 1, 10, "the first worker to start the event")
        reclaimed = sample("replydesk_worker_reclaimed_total")
        tasks.append(await run_worker(InboundWorker(redis, keys, FAST, pipe, consumer="w-b"), stop))
        await until(lambda: redis.exists(keys.outcome(event("s1").key)), 10, "the outcome")
        await until(lambda: _no_pending(redis, keys))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert pipe.calls["s1"] == 1
    assert sample("replydesk_worker_reclaimed_total") == reclaimed


async def test_a_lease_taken_over_is_not_taken_back(redis, keys):
    """A consumer that finds its entry held by another (it stalled past the timeout)
    counts the lost lease once and stops renewing; the new holder keeps the entry."""
    pipe = Slow(seconds=6 * FAST.visibility_timeout_s)
    stop = asyncio.Event()
    task = await run_worker(InboundWorker(redis, keys, FAST, pipe, consumer="w-a"), stop)
    try:
        msg_id = await add(redis, keys, event("s2"))
        await until(lambda: pipe.calls["s2"] == 1, 10, "the worker to start the event")
        lost = sample("replydesk_worker_leases_lost_total", consumer_role="worker")
        await redis.xclaim(keys.inbound, keys.WORKERS, "w-other", 0, [msg_id], justid=True)
        await until(
            lambda: (
                sample("replydesk_worker_leases_lost_total", consumer_role="worker") == lost + 1
            ),
            10,
            "the lost lease to be counted",
        )
        # The other holder stays alive (renews) through several of w-a's renewal rounds.
        for _ in range(10):
            await asyncio.sleep(FAST.visibility_timeout_s / 3)
            await redis.xclaim(keys.inbound, keys.WORKERS, "w-other", 0, [msg_id], justid=True)
        pending = await redis.xpending_range(keys.inbound, keys.WORKERS, msg_id, msg_id, 1)
        assert pending and pending[0]["consumer"] == b"w-other"
        assert sample("replydesk_worker_leases_lost_total", consumer_role="worker") == lost + 1
    finally:
        stop.set()
        await task
    assert pipe.calls["s2"] == 1  # the handler finished; its XACK settles the entry
    assert await _no_pending(redis, keys)


async def test_failed_claim_renewals_are_logged_as_the_consumers_outage(redis, keys, monkeypatch):
    """Redis unreachable for renewal rounds is the consumer's outage (bot/storage_down.py
    OutageLog, shared with its reads): a warning when it starts, a line when a call works
    again, never a line per failed round. (Here only renewals fail, so the reads between
    them end each run.)"""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from structlog.testing import capture_logs

    import bot.consumer as consumer

    real = consumer.renew_leases
    script = iter(["fail"] * 3 + ["ok"] + ["fail"] * 3)
    rounds: list[str] = []

    async def renew(*args):
        step = next(script, "ok")
        rounds.append(step)
        if step == "fail":
            raise RedisConnectionError("Connection refused")
        return await real(*args)

    monkeypatch.setattr(consumer, "renew_leases", renew)
    pipe = Slow(seconds=1.5)  # held through the scripted rounds (one each 0.1 s)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = await run_worker(InboundWorker(redis, keys, FAST, pipe, consumer="w-a"), stop)
        try:
            await add(redis, keys, event("s3"))
            await until(lambda: len(rounds) >= 8, 10, "eight renewal rounds")
        finally:
            stop.set()
            await task
    mine = [e for e in logs if e.get("part") == "worker"]
    down = [e for e in mine if e["event"] == "redis_unavailable"]
    assert down and {e["error"] for e in down} == {"ConnectionError"}
    assert len(down) <= rounds.count("fail")
    assert [e["event"] for e in mine] == ["redis_unavailable", "redis_recovered"] * len(down)
    assert not [e for e in logs if e["event"] == "consumer_lease_renew_failed"]


class _Events:
    """Stands in for a module's structlog logger; keeps the event names."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __getattr__(self, level: str):
        return lambda event, *args, **kw: self.names.append(event)


async def test_a_group_lost_with_the_data_is_recreated(redis, keys, monkeypatch):
    """Redis came back empty (no persistence, FLUSHALL, failover to an empty replica):
    ingest's next XADD makes a bare stream, and the workers recreate their group to read
    it (NOGROUP otherwise, forever), warning once."""
    import bot.consumer

    logged = _Events()
    monkeypatch.setattr(bot.consumer, "log", logged)
    stop = asyncio.Event()
    tasks = [
        await run_worker(InboundWorker(redis, keys, FAST, PassThroughPipeline()), stop)
        for _ in range(2)
    ]
    try:
        await until(lambda: redis.exists(keys.inbound), what="the workers group")
        await redis.flushall()
        await add(redis, keys, event("n1"))
        await until(lambda: redis.exists(keys.outcome(event("n1").key)), what="the outcome")
        await until(lambda: _no_pending(redis, keys))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert logged.names.count("consumer_group_recreated") == 1


async def test_lag_is_counted_when_redis_cannot_tell_it(redis, keys) -> None:
    """An unread entry deleted by hand leaves Redis without a lag figure (nil in XINFO
    GROUPS); the gauge then counts the unread entries instead of reporting 0, which would
    silence the backlog alerts."""
    await redis.xgroup_create(keys.inbound, keys.WORKERS, id="0", mkstream=True)
    ids = [await redis.xadd(keys.inbound, {"n": str(i)}) for i in range(5)]
    await redis.xreadgroup(keys.WORKERS, "c1", {keys.inbound: ">"}, count=1)  # one read
    assert (await stream_stats(redis, keys.inbound, keys.WORKERS))[1:] == (4, 1)
    await redis.xdel(keys.inbound, ids[2])  # a tombstone past the group's position
    groups = await redis.xinfo_groups(keys.inbound)
    assert groups[0]["lag"] is None  # what Redis reports here
    assert await stream_stats(redis, keys.inbound, keys.WORKERS) == (4, 3, 1)
