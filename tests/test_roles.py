"""What each ``serve --role`` runs in its process (bot/app.py ROLES), seen in-process:
its background tasks and routes, and what /healthz and /readyz say."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.app import ROLES, build_app
from tests.conftest import make_settings

# Background tasks by name (bot/app.py, bot/ops/routes.py, escalation.scanner).
WORKER_ONLY = {"inbound-worker", "sla-scanner", "ops-tick"}


def _tasks() -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks()}


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_runs_its_parts(
    aiohttp_client: Any, redis_server: Any, redis: Any, tmp_path: Any, role: str
) -> None:
    # With the real brain configured, a worker would load (here: train) the NLU model;
    # the web and the sender never do, and are ready without it.
    worker = role in ("all", "worker")
    pipeline = "pass-through" if worker else "brain"
    settings = make_settings(redis_server.url, tmp_path, **{"dialog.pipeline": pipeline})
    client = await aiohttp_client(build_app(settings, role=role))
    tasks = _tasks()
    assert ("outbox-sender" in tasks) == (role != "web")
    assert tasks >= WORKER_ONLY if worker else not (WORKER_ONLY | {"nlu-start"}) & tasks
    ingest = await client.post("/webhooks/generic/acme", data=b"{}")
    assert (ingest.status == 404) == (role in ("worker", "sender"))
    assert (await (await client.get("/healthz")).json()) == {"status": "ok", "role": role}
    r = await client.get("/readyz")
    assert r.status == 200
    assert (await r.json())["checks"] == (
        {"redis": True, "pipeline": True} if worker else {"redis": True}
    )


def test_the_cli_offers_every_role() -> None:
    # bot/cli.py spells the choices out (importing bot.app there slows every command).
    from bot.cli import build_parser

    serve = next(
        a.choices["serve"]
        for a in build_parser()._actions
        if isinstance(getattr(a, "choices", None), dict)
    )
    role = next(a for a in serve._actions if a.dest == "role")
    assert tuple(role.choices) == ROLES
