"""Stream retention never drops what a consumer group still needs (bot/retention.py)."""

from __future__ import annotations

import time
from typing import Any

from bot.redis import Keys
from bot.retention import trim_by_age, trim_stream
from tests.support.waiting import until

DAY = 24 * 3600.0


async def ids(redis: Any, stream: str) -> list[str]:
    return [i.decode() for i, _ in await redis.xrange(stream)]


async def test_only_acknowledged_old_entries_are_trimmed(redis: Any, keys: Keys) -> None:
    s = keys.inbound
    for ms in range(1, 7):  # six entries from 1970: far older than any retention
        await redis.xadd(s, {"event": str(ms)}, id=f"{ms}000-0")
    await redis.xgroup_create(s, "workers", id="0")
    await redis.xreadgroup("workers", "c1", {s: ">"}, count=4)  # 1-4 delivered
    await redis.xack(s, "workers", "1000-0", "2000-0")  # 3 and 4 still in flight
    assert await trim_stream(redis, s, keep_s=DAY, now=time.time()) == 2
    assert await ids(redis, s) == ["3000-0", "4000-0", "5000-0", "6000-0"]

    # Acknowledging moves the safe point up to the group's last delivered entry, not past
    # it: 5 and 6 were never delivered.
    await redis.xack(s, "workers", "3000-0", "4000-0")
    assert await trim_stream(redis, s, keep_s=DAY, now=time.time()) == 2
    assert await ids(redis, s) == ["5000-0", "6000-0"]

    # A second group that has read nothing holds everything.
    await redis.xgroup_create(s, "audit", id="0")
    await redis.xreadgroup("workers", "c1", {s: ">"})
    await redis.xack(s, "workers", "5000-0", "6000-0")
    assert await trim_stream(redis, s, keep_s=DAY, now=time.time()) == 0
    assert await ids(redis, s) == ["5000-0", "6000-0"]


async def test_recent_entries_stay_even_when_acknowledged(redis: Any, keys: Keys) -> None:
    s = keys.outbox
    await redis.xgroup_create(s, "senders", id="0", mkstream=True)
    for n in range(3):
        await redis.xadd(s, {"reply": str(n)})
    got = await redis.xreadgroup("senders", "c1", {s: ">"})
    await redis.xack(s, "senders", *[i for i, _ in got[0][1]])
    assert await trim_stream(redis, s, keep_s=DAY, now=time.time()) == 0
    assert len(await ids(redis, s)) == 3
    # A day later they are past retention and every group is done with them.
    assert await trim_stream(redis, s, keep_s=DAY, now=time.time() + DAY + 60) == 3


async def test_streams_without_groups_or_missing_are_left_alone(redis: Any, keys: Keys) -> None:
    await redis.xadd(keys.inbound, {"event": "x"}, id="1000-0")
    assert await trim_stream(redis, keys.inbound, keep_s=0, now=time.time()) == 0
    assert await trim_stream(redis, keys.ns("no", "such"), keep_s=0, now=time.time()) == 0
    assert await ids(redis, keys.inbound) == ["1000-0"]


async def test_dead_letters_are_trimmed_by_age(redis: Any, keys: Keys) -> None:
    """The dead stream has no group (people read it): only age counts. It keeps the
    customers' messages, so it must not grow forever."""
    now = time.time()
    old, recent = f"{int((now - 31 * DAY) * 1000)}-0", f"{int((now - DAY) * 1000)}-0"
    for i in (old, recent):
        await redis.xadd(keys.dead, {"source": "inbound", "event": "{}"}, id=i)
    assert await trim_by_age(redis, keys.dead, keep_s=30 * DAY, now=now) == 1
    assert await ids(redis, keys.dead) == [recent]
    assert await trim_by_age(redis, keys.ns("no", "such"), keep_s=DAY, now=now) == 0


async def test_worker_role_trims_on_start(
    aiohttp_client: Any, redis_server: Any, redis: Any, tmp_path: Any
) -> None:
    """Wired into the worker: old acknowledged entries and dead letters older than
    ``worker.dead_retention_s`` are gone once it has started; the entry still pending and
    a recent dead letter are kept."""
    from bot.app import build_app
    from tests.conftest import make_settings

    # Long visibility timeout: the worker must not reclaim (and settle) the pending entry.
    settings = make_settings(redis_server.url, tmp_path, **{"worker.visibility_timeout_s": 600.0})
    keys = Keys(settings.redis.key_prefix)
    s = keys.inbound
    await redis.xgroup_create(s, keys.WORKERS, id="0", mkstream=True)
    for ms in (1000, 2000, 3000):
        await redis.xadd(s, {"event": "{}"}, id=f"{ms}-0")
    await redis.xreadgroup(keys.WORKERS, "gone", {s: ">"})
    await redis.xack(s, keys.WORKERS, "1000-0", "2000-0")  # 3000 stays pending
    await redis.xadd(keys.dead, {"source": "inbound", "event": "{}"}, id="1000-0")
    recent = (await redis.xadd(keys.dead, {"source": "inbound", "event": "{}"})).decode()
    await aiohttp_client(build_app(settings, role="worker"))

    async def trimmed() -> bool:
        return await ids(redis, s) == ["3000-0"] and await ids(redis, keys.dead) == [recent]

    await until(trimmed, what="the worker's start-up trim")


async def _resolved_ticket(redis: Any, keys: Keys, at: float, user: str) -> tuple[Any, str]:
    """A ticket opened, answered into its lists and resolved at ``at``."""
    from escalation.tickets import TicketStore
    from tests.support.escalation import FakeClock, event

    clock = FakeClock(at)
    store = TicketStore(redis, keys, clock=clock)
    tid, _ = await store.open_or_append(
        event(user=user, at=at),
        reason="complaint",
        priority="normal",
        reasons={},
        context=[{"at": at - 60, "from": "customer", "kind": "dm", "text": "order A1?"}],
    )
    await store.add_note(tid, "ann", "called them")
    clock.advance(60)
    await store.resolve(tid, "ann")
    return store, tid


async def ticket_keys(redis: Any, keys: Keys, tid: str) -> list[str]:
    return sorted([k.decode() async for k in redis.scan_iter(match=keys.ns("ticket", tid) + "*")])


async def test_resolved_tickets_are_purged_after_their_retention(redis: Any, keys: Keys) -> None:
    """A ticket resolved before the cut-off goes with everything it holds (the customer's
    messages, context, notes, history); a later one, an open one and one reopened since
    stay."""
    now = time.time()
    store, old = await _resolved_ticket(redis, keys, now - 40 * DAY, "1")
    _, recent = await _resolved_ticket(redis, keys, now - 10 * DAY, "2")
    _, reopened = await _resolved_ticket(redis, keys, now - 50 * DAY, "3")
    await store.reopen(reopened, "ann")
    from tests.support.escalation import event

    still_open, _ = await store.open_or_append(
        event(user="4", at=now - 60 * DAY), reason="complaint", priority="normal", reasons={}
    )
    assert len(await ticket_keys(redis, keys, old)) >= 4  # hash, msgs, notes, history...
    assert await store.purge_resolved(before=now - 30 * DAY) == 1
    assert await ticket_keys(redis, keys, old) == []
    assert await redis.zscore(store.k_resolved, old) is None
    for kept in (recent, reopened, still_open):
        assert await store.get(kept) is not None, kept
    assert await store.purge_resolved(before=now - 30 * DAY) == 0


async def test_worker_role_purges_resolved_tickets_when_configured(
    aiohttp_client: Any, redis_server: Any, redis: Any, tmp_path: Any
) -> None:
    from bot.app import build_app
    from tests.conftest import make_settings

    settings = make_settings(
        redis_server.url, tmp_path, **{"escalation.resolved_retention_days": 30}
    )
    keys = Keys(settings.redis.key_prefix)
    now = time.time()
    store, old = await _resolved_ticket(redis, keys, now - 31 * DAY, "1")
    _, recent = await _resolved_ticket(redis, keys, now - 29 * DAY, "2")
    await aiohttp_client(build_app(settings, role="worker"))

    async def purged() -> bool:
        return await ticket_keys(redis, keys, old) == []

    await until(purged, what="the worker's start-up purge")
    assert await store.get(recent) is not None
