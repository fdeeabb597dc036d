"""End to end through real webhooks, the real NLU and a fake generic platform.

A confident FAQ DM is answered; a complaint mention gets an acknowledgement and a
ticket; the follow-up lands on the ticket with no bot reply; an agent claims, replies
(the platform receives it) and resolves; the next message is the bot's again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot import keys as K
from bot.app import build_app
from bot.config import NluConfig
from bot.pipeline import Outcome
from escalation.agents import AgentStore
from tests.conftest import GENERIC_SECRET, make_settings
from tests.support.trained_nlu import nlu_data_dir
from tests.support.waiting import until
from tests.support.webhooks import generic_event, signed

ROOT = Path(__file__).resolve().parents[1]
API = "/api/v1"


@pytest.fixture
async def platform(aiohttp_server: Any) -> Any:
    """The fake generic platform: records every reply it is sent."""
    got: list[dict[str, Any]] = []

    async def replies(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.json_response({"id": f"p{len(got)}"})

    app = web.Application()
    app.router.add_post("/replies", replies)
    server = await aiohttp_server(app)
    server.got = got
    return server


@pytest.fixture(scope="session")
def e2e_artifact() -> Any:
    """The trained NLU, loaded once per session from a machine-wide folder (trained once,
    retrained only when nlu_data or the encoder change), so this file stays fast. Same
    pattern as tests.conftest_nlu, whose session-tmp artifact would retrain every run."""
    from bot.nlu.artifact import load_or_train

    cfg = NluConfig()
    loaded = load_or_train(
        ROOT / "nlu_data", Path(nlu_data_dir()) / "nlu", cfg.encoder, cfg.runtime
    )
    loaded.encoder.encode(["warm up"])
    return loaded


@pytest.fixture
async def nlu(e2e_artifact: Any) -> Any:
    from bot.nlu.service import NluService

    svc = NluService(
        NluConfig(train_on_start=False),
        nlu_data_dir(),
        str(ROOT / "nlu_data"),
        preloaded=e2e_artifact,
    )
    await svc.start()
    yield svc
    await svc.close()


@pytest.fixture
async def client(
    aiohttp_client: Any, redis_server: Any, redis: Any, tmp_path: Any, platform: Any, nlu: Any
) -> Any:
    settings = make_settings(
        redis_server.url,
        tmp_path,
        **{
            "dialog.pipeline": "brain",
            "dialog.responses_path": str(ROOT / "nlu_data" / "responses"),
            "accounts": [
                {
                    "id": "acme",
                    "platform": "generic",
                    "user_id": "1000",
                    "handle": "acme",
                    "api_base": str(platform.make_url("")),
                    "secrets": {"signing_secret": GENERIC_SECRET},
                }
            ],
        },
    )
    app = build_app(settings, role="all")
    app[K.SERVICES]["nlu"] = nlu  # trained once per machine; started per test
    c = await aiohttp_client(app)
    c.token = await AgentStore(redis, app[K.KEYS]).add("ann", "agent")
    return c


async def send(client: Any, ev: dict[str, Any]) -> None:
    body, headers = signed(GENERIC_SECRET, ev)
    r = await client.post("/webhooks/generic/acme", data=body, headers=headers)
    assert r.status == 200


async def outcome(
    client: Any, event_id: str, platform: str = "generic", account: str = "acme"
) -> Outcome:
    redis, keys = client.app[K.REDIS], client.app[K.KEYS]
    key = keys.outcome(f"{platform}:{account}:{event_id}")
    await until(lambda: redis.exists(key))
    return Outcome.from_json(await redis.get(key))


async def received(platform: Any, n: int) -> list[dict[str, Any]]:
    await until(lambda: len(platform.got) >= n)
    return list(platform.got)


async def test_full_conversation(client: Any, platform: Any, capsys: Any) -> None:
    auth = {"Authorization": f"Bearer {client.token}"}

    # 1. A confident FAQ question by DM is answered.
    await send(client, generic_event("e1", "how do I return an item?", author_id="7", handle="bob"))
    o = await outcome(client, "e1")
    assert o.decision == "answer" and o.reasons["faq_id"], o.reasons
    (faq,) = await received(platform, 1)
    assert faq["kind"] == "dm" and faq["recipient_id"] == "7" and faq["text"]

    # 2. A complaint mention: acknowledgement moving to DM, and a ticket.
    await send(
        client,
        generic_event(
            "e2",
            "@acme this is the worst service ever, I'm furious",
            kind="mention",
            reply_to_id="post-2",
        ),
    )
    o = await outcome(client, "e2")
    assert o.decision == "escalate" and o.ticket_id, o
    ack = (await received(platform, 2))[1]
    assert ack["kind"] == "mention" and ack["in_reply_to_id"] == "post-2" and "DM" in ack["text"]
    tid = o.ticket_id

    # 3. The follow-up lands on the ticket; the bot says nothing.
    await send(client, generic_event("e3", "hi, my order A12345 never arrived", kind="dm"))
    o = await outcome(client, "e3")
    assert o.decision == "append" and o.ticket_id == tid and o.reply_ids == []
    detail = await (await client.get(f"{API}/tickets/{tid}", headers=auth)).json()
    assert [m["from"] for m in detail["conversation"]] == ["customer", "bot", "customer"]
    assert detail["ticket"]["reasons"]["intent"] == "complaint"

    # 4. An agent claims, replies (the platform receives it) and resolves.
    assert (await client.post(f"{API}/tickets/{tid}/claim", headers=auth)).status == 200
    r = await client.post(
        f"{API}/tickets/{tid}/reply", json={"text": "Sorry! Checking A12345 now."}, headers=auth
    )
    assert r.status == 200
    agent_reply = (await received(platform, 3))[2]
    assert agent_reply["text"] == "Sorry! Checking A12345 now." and agent_reply["kind"] == "dm"
    assert agent_reply["recipient_id"] == "42"
    detail = await (await client.get(f"{API}/tickets/{tid}", headers=auth)).json()
    assert detail["ticket"]["sla"]["first_response"]["state"] == "met"
    assert (await client.post(f"{API}/tickets/{tid}/resolve", headers=auth)).status == 200

    # 5. The conversation is the bot's again.
    await send(client, generic_event("e4", "hello", kind="dm"))
    o = await outcome(client, "e4")
    assert o.decision == "answer" and o.reasons["intent"] == "greet"
    assert (await received(platform, 4))[3]["text"].startswith(("Hi!", "Hello"))

    # 6. Insights saw every message the pipeline decided on, and the first response.
    ins = await (await client.get(f"{API}/insights", params={"account": "acme"}, headers=auth)).json()
    assert ins["messages"] == 4
    assert "complaint" in {row["intent"] for row in ins["top_intents"]}
    assert ins["first_response"]["count"] == 1

    # Message text is personal data: the logs carry ids, never what anyone wrote.
    logs = capsys.readouterr()
    assert "event_done" in logs.out + logs.err
    for text in ("how do I return an item", "Checking A12345 now", "hello"):
        assert text not in logs.out + logs.err


async def test_a_mention_with_handles_gets_the_faq_its_words_ask_for(
    client: Any, platform: Any
) -> None:
    """Public mentions start with @handles; the answer must follow what the words ask."""
    words = "how long do refunds take?"
    await send(client, generic_event("d1", words, author_id="8", handle="cat"))
    await send(
        client,
        generic_event(
            "m1", f"@acme @bestie {words}", kind="mention", author_id="9", reply_to_id="post-9"
        ),
    )
    dm, mention = await outcome(client, "d1"), await outcome(client, "m1")
    assert dm.decision == "answer" and dm.reasons["faq_id"], dm.reasons
    assert mention.decision == "answer", mention.reasons
    # The handles change nothing the NLU decided on, down to the scores.
    same = ("intent", "confidence", "faq_id", "faq_score", "negativity", "language")
    assert {k: mention.reasons[k] for k in same} == {k: dm.reasons[k] for k in same}
    replies = {r["kind"]: r for r in await received(platform, 2)}
    assert replies["mention"]["in_reply_to_id"] == "post-9"


# -- the same through the Weibo adapter -------------------------------------------
def weibo_time(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S +0800 %Y", time.gmtime(t + 8 * 3600))


async def test_weibo_complaint_dm_ack_ticket_and_agent_reply(
    aiohttp_client: Any, aiohttp_server: Any, redis_server: Any, redis: Any, tmp_path: Any, nlu: Any
) -> None:
    import json as _json

    from tests.fakes import FakeWeibo
    from tests.fakes.harness import WEIBO_TOKEN, accounts, weibo_query

    fake = FakeWeibo(token=WEIBO_TOKEN)
    server = await aiohttp_server(fake.app)
    settings = make_settings(
        redis_server.url,
        tmp_path,
        **{
            "dialog.pipeline": "brain",
            "dialog.responses_path": str(ROOT / "nlu_data" / "responses"),
            "accounts": accounts(weibo_base=str(server.make_url("")).rstrip("/")),
        },
    )
    app = build_app(settings, role="all")
    app[K.SERVICES]["nlu"] = nlu
    client = await aiohttp_client(app)
    token = await AgentStore(redis, app[K.KEYS]).add("ann", "agent")
    auth = {"Authorization": f"Bearer {token}"}

    async def push(payload: dict[str, Any]) -> str:
        """Post a push; the id the adapter derived for it (Weibo sends none)."""
        body = _json.dumps(payload, ensure_ascii=False).encode()
        r = await client.post("/webhooks/weibo/brandwb", params=weibo_query(), data=body)
        assert r.status == 200
        ((_, fields),) = await redis.xrevrange(app[K.KEYS].inbound, count=1)
        return str(_json.loads(fields[b"event"])["event_id"])

    now = time.time()
    dm = {
        "type": "text",
        "receiver_id": 1902538057,
        "sender_id": 2489518277,
        "created_at": weibo_time(now),
        "text": "你们的服务太差了，快递一直不到，我要投诉！",
        "data": {},
    }
    o = await outcome(client, await push(dm), "weibo", "brandwb")
    assert o.decision == "escalate" and o.ticket_id, o
    await until(lambda: fake.messages)
    (ack,) = fake.messages
    assert ack["receiver_id"] == "2489518277" and "客服" in str(ack["text"])

    # A complaint mention from someone else: a ticket, and no public acknowledgement on Weibo.
    mention = {
        **dm,
        "type": "mention",
        "sender_id": 3000000001,
        "text": "@品牌客服 太差劲了，垃圾服务！",
        "created_at": weibo_time(now + 1),
    }
    o2 = await outcome(client, await push(mention), "weibo", "brandwb")
    assert o2.decision == "escalate" and o2.reply_ids == [] and o2.ticket_id != o.ticket_id

    # The agent answers the DM ticket through the Weibo API; the window is shown.
    detail = await (await client.get(f"{API}/tickets/{o.ticket_id}", headers=auth)).json()
    assert detail["ticket"]["reply_window"]["open"] is True
    r = await client.post(
        f"{API}/tickets/{o.ticket_id}/reply", json={"text": "您好，已为您加急处理。"}, headers=auth
    )
    assert r.status == 200
    await until(lambda: len(fake.messages) >= 2)
    assert fake.messages[1]["text"] == "您好，已为您加急处理。"
