"""Crisis alerts and insights with generated traffic and an injected clock (no sleeps)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bot import metrics
from bot.app import build_app
from bot.config import OpsConfig
from bot.models import Author, InboundEvent
from bot.ops import notify, record_message
from bot.ops.insights import account_insights, record_first_response
from bot.ops.routes import CLOCK, tick
from bot.ops.spikes import SpikeDetector, get_alert, list_alerts
from escalation.agents import AgentStore
from tests.support.cli import replydesk_cli
from tests.support.fresh_metrics import fresh_samples
from tests.support.notify_hook import hook_server
from tests.support.redis_server import env_with_redis

T0 = 1_800_000_000.0  # an arbitrary fixed "now" at the start of the quiet period
CFG = OpsConfig(
    bucket_s=60,
    window_s=600,
    baseline_half_life_s=3600,
    factor=3.0,
    min_count=10,
    terms_bucket_s=3600,
    insights_recent_s=3600,
    insights_baseline_s=6 * 3600,
)

QUIET = [
    "where is my order",
    "how do I change my delivery address",
    "do you ship to Canada",
    "what are your opening hours",
    "订单什么时候发货",
    "怎么修改收货地址",
]
GRUMBLES = ["the app is slow again", "support never answers my emails", "物流太慢了"]
BURST = [
    "my phone battery exploded while charging!!",
    "battery swelling and overheating, this is dangerous",
    "battery exploded on my desk, recall now",
    "电池爆炸了，太危险了",
    "充电时电池鼓包爆炸，要求召回",
]


def ev(i: int, text: str, at: float, kind: str = "mention") -> InboundEvent:
    return InboundEvent(
        platform="generic",
        account="acme",
        kind=kind,  # type: ignore[arg-type]
        event_id=f"e{i}",
        author=Author(id=str(5000 + i), handle=f"user{i}"),
        text=text,
        created_at=at,
        received_at=at,
    )


def raised_count(account: str = "acme") -> float:
    return metrics.CRISIS_ALERTS.labels(account, "raised")._value.get()


async def quiet_period(redis: Any, keys: Any, *, start: float, hours: float, n0: int = 0) -> int:
    """One message every 2 minutes, one in five a (different) grumble; returns next id."""
    rnd = random.Random(7)
    i, t = n0, start
    while t < start + hours * 3600:
        neg = i % 5 == 0
        text = rnd.choice(GRUMBLES if neg else QUIET)
        await record_message(
            redis,
            keys,
            ev(i, text, t),
            intent="complaint" if neg else "order_status",
            negative=neg,
            decision="escalate" if neg else "answer",
            now=t,
            cfg=CFG,
        )
        i += 1
        t += 120
    return i


async def burst(
    redis: Any, keys: Any, *, start: float, n: int, n0: int, every_s: float = 10
) -> int:
    for j in range(n):
        t = start + j * every_s
        await record_message(
            redis,
            keys,
            ev(n0 + j, BURST[j % len(BURST)], t),
            intent="complaint",
            negative=True,
            decision="escalate",
            now=t,
            cfg=CFG,
        )
    return n0 + n


async def events_of(redis: Any, keys: Any, kind: str) -> list[dict[str, str]]:
    rows = await redis.xrange(keys.events)
    out = [{k.decode(): v.decode() for k, v in f.items()} for _, f in rows]
    return [r for r in out if r["type"] == kind]


async def play(redis: Any, keys: Any, timeline: list[tuple[float, str, bool]], n0: int) -> int:
    for j, (t, text, neg) in enumerate(sorted(timeline)):
        await record_message(
            redis,
            keys,
            ev(n0 + j, text, t),
            intent="complaint" if neg else "order_status",
            negative=neg,
            decision="escalate" if neg else "answer",
            now=t,
            cfg=CFG,
        )
    return n0 + len(timeline)


async def test_quiet_baseline_then_burst_raises_one_alert_and_clears(redis: Any, keys: Any) -> None:
    before = raised_count()
    n = await quiet_period(redis, keys, start=T0, hours=6)
    t_burst = T0 + 6 * 3600
    assert await list_alerts(redis, keys) == []  # the baseline's grumbles raise nothing

    # 40 complaints in ~7 minutes, while the usual traffic (and grumbling) goes on.
    usual = [(t_burst + 5 + 120 * k, QUIET[k % len(QUIET)], False) for k in range(4)]
    usual += [(t_burst + 65 + 120 * k, GRUMBLES[0], True) for k in range(3)]
    complaints = [(t_burst + 10 * j, BURST[j % len(BURST)], True) for j in range(40)]
    n = await play(redis, keys, usual + complaints, n)
    alerts = await list_alerts(redis, keys)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["status"] == "active" and alert["account"] == "acme"
    assert alert["window_count"] >= CFG.min_count
    assert raised_count() - before == 1
    assert len(await events_of(redis, keys, "alert.raised")) == 1
    queued = [json.loads(x) for x in await redis.lrange(notify.queue_key(keys), 0, -1)]
    assert [q["data"]["event"] for q in queued] == ["alert.raised"]
    assert "acme" in queued[0]["text"]

    # The spike's messages are grouped with the alert: every burst complaint (and the
    # grumbles that came in the middle of it), nothing from the quiet hours before.
    full = await get_alert(redis, keys, alert["id"], events=1000)
    assert full is not None
    texts = [m["text"] for m in full["messages"]]
    assert full["message_count"] == 43 and texts.count(GRUMBLES[0]) == 3
    assert min(m["at"] for m in full["messages"]) >= t_burst

    # The burst's terms are what insights shows rising, in English and Chinese; the
    # steady grumble is not news.
    ins = await account_insights(redis, keys, CFG, "acme", now=t_burst + 400)
    rising_neg = [r["term"] for r in ins["rising_terms"]["negative"]]
    assert "battery" in rising_neg[:3]
    assert "电池" in rising_neg and "爆炸" in rising_neg
    assert "slow" not in rising_neg
    assert ins["top_intents"][0]["intent"] == "complaint"

    # More complaints at the same level: still the one alert, whose peak grows while
    # it is active (it stayed at the raising count until the alert cleared).
    n = await burst(redis, keys, start=t_burst + 400, n=10, n0=n)
    (still,) = await list_alerts(redis, keys)
    assert raised_count() - before == 1 and still["status"] == "active"
    assert still["peak"] > alert["window_count"]

    # The rate falls back: the periodic re-evaluation clears it without new messages.
    detector = SpikeDetector(redis, keys, CFG)
    state = await detector.observe("acme", now=t_burst + 400 + 100 + CFG.window_s)
    assert state.transition == "cleared"
    (cleared,) = await list_alerts(redis, keys)
    assert cleared["status"] == "cleared" and cleared["cleared_at"] is not None
    assert cleared["peak"] >= alert["window_count"]
    assert len(await events_of(redis, keys, "alert.cleared")) == 1
    assert (await detector.observe("acme", now=t_burst + 2000)).transition == "none"

    # Quiet again for an hour, then a new burst is a new alert.
    t2 = t_burst + 3000
    n = await quiet_period(redis, keys, start=t2, hours=1, n0=n)
    await burst(redis, keys, start=t2 + 3600, n=15, n0=n)
    assert [a["status"] for a in await list_alerts(redis, keys)] == ["active", "cleared"]
    assert raised_count() - before == 2


async def test_a_steady_negative_rate_is_the_baseline_not_a_spike(redis: Any, keys: Any) -> None:
    """A busy account's normal (2 negatives a minute, 20 a window, over min_count) from
    its first minute: the baseline learns it at once and nothing is raised; a burst on top
    later still is."""
    det = SpikeDetector(redis, keys, CFG)
    states = []
    for m in range(3 * 60):
        for j in range(2):
            states.append(await det.observe("busy", now=T0 + m * 60 + j * 20, item="{}"))
    assert not [s for s in states if s.transition == "raised"]
    assert 15 <= states[-1].baseline <= 25 and states[-1].count == 20
    state = await redis.hgetall(keys.ns("ops", "spike", "busy"))
    assert b"ewma" in state and await redis.ttl(keys.ns("ops", "spike", "busy")) > 0
    t = T0 + 3 * 3600
    raised = [
        await det.observe("busy", now=t + i, item="{}") for i in range(int(states[-1].threshold))
    ]
    assert [s.transition for s in raised].count("raised") == 1


async def test_many_workers_racing_raise_exactly_once(redis: Any, keys: Any) -> None:
    n = await quiet_period(redis, keys, start=T0, hours=2)
    t = T0 + 2 * 3600
    # 60 complaints handled at the same instant by concurrent callers (many workers).
    await asyncio.gather(
        *(
            record_message(
                redis,
                keys,
                ev(n + j, BURST[j % 5], t),
                intent="complaint",
                negative=True,
                decision="escalate",
                now=t,
                cfg=CFG,
            )
            for j in range(60)
        )
    )
    alerts = await list_alerts(redis, keys)
    assert len(alerts) == 1
    full = await get_alert(redis, keys, alerts[0]["id"], events=1000)
    assert full is not None and full["message_count"] == 60  # none lost, none doubled
    assert len(await events_of(redis, keys, "alert.raised")) == 1


async def test_a_crash_after_the_script_keeps_banner_and_notification(
    redis: Any, keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies (here: raises) right after the script returns: the alert, its
    console event and its notification are already written, for the raise and the clear."""

    class Crash(Exception):
        pass

    def die(*_: Any) -> Any:
        raise Crash

    n = await quiet_period(redis, keys, start=T0, hours=2)
    t = T0 + 2 * 3600
    monkeypatch.setattr(metrics.CRISIS_ALERTS, "labels", die)
    with pytest.raises(Crash):
        await burst(redis, keys, start=t, n=40, n0=n)
    (alert,) = await list_alerts(redis, keys)
    assert alert["status"] == "active"
    (raised,) = await events_of(redis, keys, "alert.raised")
    assert raised["alert_id"] == alert["id"]
    assert json.loads(raised["data"])["window_count"] == alert["window_count"]
    (queued,) = [json.loads(x) for x in await redis.lrange(notify.queue_key(keys), 0, -1)]
    assert queued["kind"] == "crisis" and queued["data"]["event"] == "alert.raised"
    assert queued["data"]["alert_id"] == alert["id"]
    assert f"{alert['window_count']} negative messages in the last 10 min" in queued["text"]
    assert queued["text"].endswith(f"Alert {alert['id']}.")

    with pytest.raises(Crash):
        await SpikeDetector(redis, keys, CFG).observe("acme", now=t + 3600)
    (cleared,) = await list_alerts(redis, keys)
    assert cleared["status"] == "cleared" and cleared["cleared_at"] == t + 3600
    assert [e["alert_id"] for e in await events_of(redis, keys, "alert.cleared")] == [alert["id"]]
    queued = [json.loads(x) for x in await redis.lrange(notify.queue_key(keys), 0, -1)]
    assert [q["data"]["event"] for q in queued] == ["alert.raised", "alert.cleared"]
    assert f"peak {cleared['peak']} negative" in queued[1]["text"]


async def test_a_stale_read_of_the_active_alert_is_retried(
    redis: Any, keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker raised the alert between this caller's read and its script: the
    script refuses, the caller reads again, and the message joins the raised alert."""
    n = await quiet_period(redis, keys, start=T0, hours=2)
    t = T0 + 2 * 3600
    n = await burst(redis, keys, start=t, n=30, n0=n)
    (alert,) = await list_alerts(redis, keys)
    detector = SpikeDetector(redis, keys, CFG)
    real_hget = redis.hget
    reads: list[bytes | None] = []

    async def stale_once(*args: Any) -> Any:
        value = b"" if not reads else await real_hget(*args)
        reads.append(value)
        return value

    monkeypatch.setattr(redis, "hget", stale_once)
    state = await detector.observe("acme", now=t + 300, item='{"text":"late"}')
    assert state.transition == "active" and state.alert_id == alert["id"]
    assert reads == [b"", alert["id"].encode()]
    full = await get_alert(redis, keys, alert["id"], events=1000)
    assert full is not None and full["messages"][-1] == {"text": "late"}
    assert len(await list_alerts(redis, keys)) == 1


async def test_dms_and_positive_messages_do_not_count(redis: Any, keys: Any) -> None:
    for j in range(30):
        await record_message(
            redis,
            keys,
            ev(j, BURST[0], T0 + j, kind="dm"),
            intent="complaint",
            negative=True,
            decision="escalate",
            now=T0 + j,
            cfg=CFG,
        )
        await record_message(
            redis,
            keys,
            ev(100 + j, QUIET[0], T0 + j),
            intent="order_status",
            negative=False,
            decision="answer",
            now=T0 + j,
            cfg=CFG,
        )
    assert await list_alerts(redis, keys) == []
    ins = await account_insights(redis, keys, CFG, "acme", now=T0 + 60)
    assert ins["messages"] == 60 and ins["negative"] == 30
    assert ins["auto_answer_rate"] == 0.5


async def test_notification_posts_slack_compatible_text(
    redis: Any, keys: Any, aiohttp_server: Any
) -> None:
    server, got = await hook_server(aiohttp_server, {"n": 1}, status=502)
    await notify.enqueue(redis, keys, kind="crisis", text="crisis on acme", data={"alert_id": "a1"})
    from aiohttp import ClientSession

    from bot.config import Secret

    url = Secret(str(server.make_url("/hook")))
    async with ClientSession() as http:
        assert await notify.deliver_pending(redis, keys, http, url, now=T0) == 0  # 502: later
        retry_at = T0 + notify.RETRY.first_s
        assert await notify.deliver_pending(redis, keys, http, url, now=retry_at) == 1
        assert await notify.deliver_pending(redis, keys, http, url, now=retry_at) == 0
    assert got == [{"text": "crisis on acme", "replydesk": {"kind": "crisis", "alert_id": "a1"}}]


@pytest.fixture
def clock() -> dict[str, float]:
    return {"now": T0}


async def test_alerts_and_insights_routes_need_an_agent(
    redis: Any, keys: Any, settings: Any, aiohttp_client: Any, clock: dict[str, float]
) -> None:
    settings.ops = CFG
    app = build_app(settings, role="web")
    app[CLOCK] = lambda: clock["now"]
    client = await aiohttp_client(app)
    token = await AgentStore(redis, keys).add("ana", "agent")
    auth = {"Authorization": f"Bearer {token}"}

    for path in ("/api/v1/alerts", "/api/v1/insights?account=acme", "/api/v1/alerts/x"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers={"Authorization": "Bearer nope"})).status == 401

    n = await quiet_period(redis, keys, start=T0, hours=3)
    await burst(redis, keys, start=T0 + 3 * 3600, n=20, n0=n)
    clock["now"] = T0 + 3 * 3600 + 200

    r = await client.get("/api/v1/alerts?status=active", headers=auth)
    assert r.status == 200
    (alert,) = (await r.json())["alerts"]
    r = await client.get(f"/api/v1/alerts/{alert['id']}", headers=auth)
    detail = await r.json()
    assert detail["message_count"] == 20 and len(detail["messages"]) == 20
    assert {m["key"] for m in detail["messages"]} == {f"generic:acme:e{n + j}" for j in range(20)}
    assert (await client.get("/api/v1/alerts/nope", headers=auth)).status == 404

    await record_first_response(redis, keys, account="acme", seconds=90, now=clock["now"])
    await record_first_response(redis, keys, account="acme", seconds=30, now=clock["now"])
    r = await client.get("/api/v1/insights?account=acme", headers=auth)
    ins = await r.json()
    assert "battery" in [t["term"] for t in ins["rising_terms"]["negative"]]
    assert ins["first_response"] == {"count": 2, "median_s": 30.0, "p90_s": 90.0, "mean_s": 60.0}
    assert (await client.get("/api/v1/insights", headers=auth)).status == 400
    assert (await client.get("/api/v1/insights?account=zz", headers=auth)).status == 404


async def test_worker_tick_clears_alerts_without_traffic(
    redis: Any, keys: Any, settings: Any, clock: dict[str, float]
) -> None:
    settings.ops = CFG
    app = build_app(settings, role="worker")
    app[CLOCK] = lambda: clock["now"]
    from bot import keys as K

    app[K.REDIS] = redis  # tick() needs only Redis, keys, settings and the clock
    # history: a bucket that has left the window
    await SpikeDetector(redis, keys, CFG).observe("acme", now=T0 - CFG.window_s - 120)
    await burst(redis, keys, start=T0, n=12, n0=0, every_s=1)
    assert (await list_alerts(redis, keys))[0]["status"] == "active"
    clock["now"] = T0 + CFG.window_s + 60
    await tick(app)
    assert (await list_alerts(redis, keys))[0]["status"] == "cleared"
    assert metrics.CRISIS_ACTIVE.labels("acme")._value.get() == 0


def run_cli(redis_url: str, cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return replydesk_cli(*args, config=cfg, env=env_with_redis(redis_url))


async def test_insights_and_alerts_commands(
    redis: Any, keys: Any, redis_server: Any, tmp_path: Path
) -> None:
    start = time.time() - 300
    ops = OpsConfig(bucket_s=60, window_s=600, min_count=10)
    # history: a bucket that has left the window
    await SpikeDetector(redis, keys, ops).observe("acme", now=start - ops.window_s - 120)
    await burst(redis, keys, start=start, n=12, n0=0, every_s=5)
    cfg = tmp_path / "replydesk.yml"
    # Its own data dir: the default ./var may hold a `serve --demo`'s demo accounts,
    # which the CLI lists beside the configured ones.
    cfg.write_text(
        "ops: {bucket_s: 60, window_s: 600, min_count: 10}\n"
        f"redis: {{data_dir: {json.dumps(str(tmp_path / 'var'))}}}\n"
        "accounts: [{id: acme, platform: generic, secrets: {signing_secret: x}}]\n"
    )
    out = await asyncio.to_thread(run_cli, redis_server.url, cfg, "insights", "--account", "acme")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["negative"] == 12 and "battery" in [
        t["term"] for t in body["top_terms"]["negative"]
    ]
    out = await asyncio.to_thread(run_cli, redis_server.url, cfg, "alerts", "--status", "active")
    assert out.returncode == 0, out.stderr
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["account"] == "acme" and row["message_count"] == 12
    out = await asyncio.to_thread(run_cli, redis_server.url, cfg, "insights", "--account", "nope")
    assert out.returncode == 2 and "no account 'nope' (accounts: acme;" in out.stderr


async def test_a_redelivered_event_counts_once(redis: Any, keys: Any) -> None:
    e = ev(1, BURST[0], T0)
    for _ in range(3):
        await record_message(
            redis, keys, e, intent="complaint", negative=True, decision="escalate", now=T0, cfg=CFG
        )
    ins = await account_insights(redis, keys, CFG, "acme", now=T0)
    assert ins["messages"] == 1 and ins["negative"] == 1
    assert (await SpikeDetector(redis, keys, CFG).observe("acme", now=T0)).count == 1


def test_a_workers_crisis_alert_counters_exist_at_zero_once_configured() -> None:
    """The dashboard counts crisis alerts with increase(), which sees nothing into a
    series' first sample: a counter born at 1 on a worker's first raise (often its only
    one) would show no alert at all."""
    samples = fresh_samples(worker=True)
    for transition in ("raised", "cleared"):
        labels = (("account", "shop"), ("transition", transition))
        assert samples[("replydesk_crisis_alerts_total", labels)] == 0


@pytest.mark.parametrize("fails", ["counts", "spike"])
async def test_a_run_that_fails_part_way_is_counted_by_the_redelivery(
    redis: Any, keys: Any, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    """A Redis error (or a killed worker) between the insights counts and the spike count
    fails the event, which is delivered again: that run counts what the first did not,
    and nothing twice."""
    import bot.ops.recorder as recorder

    class Down(Exception):
        pass

    real = {"counts": recorder.queue_counts, "spike": SpikeDetector.observe}[fails]
    calls: list[int] = []

    def once(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise Down
        return real(*args, **kw)

    if fails == "counts":
        monkeypatch.setattr(recorder, "queue_counts", once)
    else:
        monkeypatch.setattr(SpikeDetector, "observe", once)
    e = ev(1, BURST[0], T0)
    for attempt in range(3):  # the failed run, its redelivery, and one more
        try:
            await record_message(
                redis, keys, e, intent="complaint", negative=True, decision="escalate",
                now=T0 + attempt, cfg=CFG,
            )  # fmt: skip
        except Down:
            assert attempt == 0
    monkeypatch.undo()
    ins = await account_insights(redis, keys, CFG, "acme", now=T0)
    assert ins["messages"] == 1 and ins["negative"] == 1
    assert (await SpikeDetector(redis, keys, CFG).observe("acme", now=T0 + 5)).count == 1


async def test_a_limit_below_one_is_refused(
    redis: Any, keys: Any, settings: Any, aiohttp_client: Any
) -> None:
    """``limit=0`` listed one alert (the loop stopped after its first); 0 rows asked for
    is a mistake to say, not a list to guess."""
    settings.ops = CFG
    client = await aiohttp_client(build_app(settings, role="web"))
    auth = {"Authorization": f"Bearer {await AgentStore(redis, keys).add('ana', 'agent')}"}
    n = await quiet_period(redis, keys, start=T0, hours=1)
    await burst(redis, keys, start=T0 + 3600, n=12, n0=n)
    assert len((await (await client.get("/api/v1/alerts", headers=auth)).json())["alerts"]) == 1
    for path in ("/api/v1/alerts?limit=0", "/api/v1/insights?account=acme&limit=0"):
        r = await client.get(path, headers=auth)
        assert r.status == 400, path
        assert (await r.json())["error"]["message"] == "limit: expected an integer of at least 1"
    r = await client.get("/api/v1/alerts?limit=1", headers=auth)
    assert r.status == 200 and len((await r.json())["alerts"]) == 1


async def _put_alert(redis: Any, keys: Any, aid: str, raised: float, status: str) -> None:
    """An alert as the spike script leaves it: hash, its messages, the index entry."""
    from bot.ops.spikes import ops_key

    await redis.hset(
        ops_key(keys, "alert", aid),
        mapping={"id": aid, "account": "acme", "status": status, "raised_at": raised},
    )
    await redis.rpush(ops_key(keys, "alert", aid, "events"), json.dumps({"text": "awful"}))
    await redis.zadd(ops_key(keys, "alerts"), {aid: raised})


async def test_an_active_alert_is_listed_under_any_number_of_newer_ones(
    redis: Any, keys: Any
) -> None:
    """The console's crisis banner asks for status=active: it read only the newest 200
    alerts, so an alert still active under more of other accounts' went missing."""
    now = time.time()
    await _put_alert(redis, keys, "old-active", now - 3600, "active")
    for i in range(450):
        await _put_alert(redis, keys, f"c{i}", now - 3000 + i, "cleared")
    active = await list_alerts(redis, keys, status="active", limit=50)
    assert [a["id"] for a in active] == ["old-active"]
    assert len(await list_alerts(redis, keys, status="cleared", limit=500)) == 450


async def test_old_cleared_alerts_are_purged_with_their_messages(redis: Any, keys: Any) -> None:
    from bot.ops.spikes import ops_key, purge_alerts

    now, day = time.time(), 86400.0
    await _put_alert(redis, keys, "old-cleared", now - 100 * day, "cleared")
    await _put_alert(redis, keys, "old-active", now - 100 * day, "active")
    await _put_alert(redis, keys, "recent", now - 10 * day, "cleared")
    assert await purge_alerts(redis, keys, before=now - 90 * day) == 1
    assert not await redis.exists(
        ops_key(keys, "alert", "old-cleared"), ops_key(keys, "alert", "old-cleared", "events")
    )
    left = [a["id"] for a in await list_alerts(redis, keys, limit=10)]
    assert left == ["recent", "old-active"]
    assert await purge_alerts(redis, keys, before=now - 90 * day) == 0


async def test_worker_purges_old_cleared_alerts(
    aiohttp_client: Any, redis_server: Any, redis: Any, tmp_path: Any
) -> None:
    from bot.redis import Keys
    from tests.conftest import make_settings
    from tests.support.waiting import until

    settings = make_settings(redis_server.url, tmp_path)  # ops.alert_retention_days: 90
    keys = Keys(settings.redis.key_prefix)
    await _put_alert(redis, keys, "old", time.time() - 91 * 86400, "cleared")
    await aiohttp_client(build_app(settings, role="worker"))

    async def purged() -> bool:
        return await list_alerts(redis, keys) == []

    await until(purged, what="the worker's start-up purge")
