"""The composition root: builds the aiohttp app for a role and wires every part.

Nothing else imports this module. Every resource is opened in a ``cleanup_ctx`` and
closed in reverse order, so a stop (SIGTERM) drains consumers before Redis goes away.

Roles (``ROLES``, the CLI's ``--role`` choices): ``web`` serves webhooks, the agent API
and the console; ``worker`` runs the inbound worker (with the NLU model), the outbox
sender, the SLA scanner and the crisis-alert monitor; ``sender`` runs only the outbox
sender, without the model, for more sending or sending apart from the rest; ``all`` (the
default) runs web and worker in one process. Every role serves /healthz, /readyz and
/metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from bot import keys as K
from bot import metrics, retention
from bot.brain import LazyBrain, build_brain
from bot.config import Settings
from bot.ingest import IngestRoutes, IngestWriter
from bot.models import MESSAGE_KINDS
from bot.ops import register_ops_routes
from bot.ops.spikes import purge_alerts
from bot.outbox import Sender
from bot.pipeline import PassThroughPipeline, Pipeline
from bot.platforms import adapter_for
from bot.platforms.mastodon import MastodonAdapter
from bot.platforms.mastodon_stream import run_mastodon_streams
from bot.platforms.sandbox import SandboxAdapter
from bot.platforms.x import link_shared_webhooks
from bot.redis import Keys, open_redis
from bot.runner import STARTING
from bot.storage_down import storage_down
from bot.streams import refresh_stream_gauges
from bot.worker import InboundWorker
from escalation import lengths
from escalation.api import register_api
from escalation.console import setup_console
from escalation.sandbox import setup_sandbox
from escalation.scanner import Notifier, SlaScanner
from escalation.sla import SlaPolicies
from escalation.tickets import TicketStore
from escalation.undeliverable import note_dead, note_undeliverable

log = structlog.get_logger(__name__)

ROLES = ("all", "web", "worker", "sender")
# How often the web role reloads the Mastodon instances' length rules that the sending
# processes recorded (escalation.lengths): one MGET.
INSTANCE_RULES_REFRESH_S = 10.0
PipelineFactory = Callable[[web.Application], Pipeline]


def check_config(settings: Settings) -> None:
    """Raise ConfigError for what start-up refuses beyond ``load_settings``: an account
    its platform adapter cannot serve, SLA policies that cannot time a ticket. ``replydesk
    config`` runs it too, so its "config OK" means ``serve`` gets past the config."""
    for account in settings.accounts:
        adapter_for(account)
    SlaPolicies(settings.escalation)


def build_app(
    settings: Settings,
    *,
    role: str = "all",
    pipeline_factory: PipelineFactory | None = None,
) -> web.Application:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    check_config(settings)  # before anything starts: a bad policy stops serve at once
    app = web.Application(
        client_max_size=settings.ingest.max_body_bytes, middlewares=[storage_down]
    )
    app[K.SETTINGS] = settings
    app[K.ROLE] = role
    app[K.KEYS] = Keys(settings.redis.key_prefix)
    app[K.SERVICES] = {}
    app[STARTING] = []
    app[K.ADAPTERS] = {a.id: adapter_for(a) for a in settings.accounts}
    link_shared_webhooks(app[K.ADAPTERS].values())  # several X accounts, one app webhook

    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_http_ctx)
    register_ops_routes(app)  # alerts/insights; before the agent API's /api/v1 catch-all
    if role in ("all", "web"):
        by_route = {(a.platform, a.id): app[K.ADAPTERS][a.id] for a in settings.accounts}
        app[K.INGEST] = IngestRoutes(by_route, max_body_bytes=settings.ingest.max_body_bytes)
        app[K.INGEST].register(app)
        app.cleanup_ctx.append(_ingest_ctx)
        app.cleanup_ctx.append(_instance_rules_ctx)
        register_api(app)  # agent API under /api/v1 (escalation.api)
        setup_console(app)  # agent console pages under /console (escalation.console)
        if settings.sandbox.enabled:
            setup_sandbox(app)  # customer sandbox page under /sandbox (escalation.sandbox)
    if role in ("all", "worker"):
        metrics.start_accounts_at_zero(
            ((a.platform, a.id) for a in settings.accounts), MESSAGE_KINDS
        )
        if pipeline_factory is not None:
            app[K.PIPELINE] = pipeline_factory(app)
        elif settings.dialog.pipeline == "brain":
            app[K.PIPELINE] = LazyBrain()  # built in _brain_ctx once Redis is open
            app.cleanup_ctx.append(_brain_ctx)
        else:
            app[K.PIPELINE] = PassThroughPipeline()
    if role in ("all", "worker", "sender"):
        app.cleanup_ctx.append(_consumers_ctx)
    if role in ("all", "worker"):
        # The SLA scanner and the crisis monitor (bot/ops/routes.py, the same roles) stay
        # with the worker, which every deployment runs: a sender is only the outbox, so
        # senders can be added and stopped without moving anyone's timers or alerts.
        app.cleanup_ctx.append(_sla_scanner_ctx)

    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_redis(app[K.SETTINGS].redis) as redis:
        app[K.REDIS] = redis
        for adapter in app[K.ADAPTERS].values():
            # The sandbox delivers into Redis, not an API; Mastodon records its
            # instance's length rule there for the agent check.
            if isinstance(adapter, SandboxAdapter | MastodonAdapter):
                adapter.bind(redis, app[K.KEYS])
        yield


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        app[K.HTTP] = http
        yield


async def _ingest_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[K.SETTINGS]
    writer = IngestWriter(
        app[K.REDIS], app[K.KEYS], dedupe_ttl_s=s.ingest.dedupe_ttl_s, batch_max=s.ingest.batch_max
    )
    await writer.start()
    app[K.INGEST].writer = writer
    # Mastodon has no webhooks for remote mentions: one supervised stream per account.
    streams_stop = asyncio.Event()
    streams = asyncio.create_task(
        run_mastodon_streams(
            app[K.REDIS], app[K.KEYS], writer, app[K.ADAPTERS], app[K.HTTP], streams_stop
        ),
        name="mastodon-streams",
    )
    try:
        yield
    finally:
        streams_stop.set()
        with contextlib.suppress(Exception):
            await streams
        await writer.close()


async def _instance_rules_ctx(app: web.Application) -> AsyncIterator[None]:
    """Keeps the agent check's Mastodon length rules (escalation.lengths) current: the
    processes that read an instance record its rule in Redis, this one may not."""
    accounts = [a for a in app[K.SETTINGS].accounts if a.platform == "mastodon"]

    async def refresh() -> None:
        while True:
            # A Redis error keeps the last rules: the outage is other parts' to report.
            with contextlib.suppress(RedisError, OSError):
                await lengths.load_instance_rules(app[K.REDIS], app[K.KEYS], accounts)
            await asyncio.sleep(INSTANCE_RULES_REFRESH_S)

    # A task, not an await here: a signal during startup must be able to cancel it.
    task = asyncio.create_task(refresh(), name="instance-rules") if accounts else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lengths.forget_instance_rules(accounts)


async def _consumers_ctx(app: web.Application) -> AsyncIterator[None]:
    """The outbox sender; in the worker roles also the inbound worker and retention."""
    s = app[K.SETTINGS]
    stop = asyncio.Event()
    sender = Sender(
        app[K.REDIS],
        app[K.KEYS],
        s.worker,
        app[K.ADAPTERS],
        app[K.HTTP],
        # A reply the platform window no longer allows becomes a note on the ticket.
        on_undeliverable=functools.partial(
            note_undeliverable, app[K.REDIS], app[K.KEYS], cfg=s.escalation
        ),
        # So is one that ends in the dead stream (refused, delivery unknown, out of tries).
        on_dead=functools.partial(note_dead, app[K.REDIS], app[K.KEYS], cfg=s.escalation),
    )
    tasks = [asyncio.create_task(sender.run(stop), name="outbox-sender")]
    if app[K.ROLE] != "sender":
        tasks += _worker_tasks(app, stop)
    try:
        yield
    finally:
        stop.set()
        log.info("draining")
        for t in tasks:
            with contextlib.suppress(Exception):
                await t


def _worker_tasks(app: web.Application, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The inbound worker, and the retention of streams, tickets and alerts."""
    s = app[K.SETTINGS]
    worker = InboundWorker(app[K.REDIS], app[K.KEYS], s.worker, app[K.PIPELINE])

    async def consume() -> None:
        # Not before the pipeline can decide (the NLU model may still be loading): an
        # event taken earlier would fail its attempts.
        stopping = asyncio.create_task(stop.wait())
        try:
            for task in app[STARTING]:
                await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set() or task.cancelled() or task.exception():
                    return  # the runner reports a failed start
        finally:
            stopping.cancel()
        await worker.run(stop)

    tasks = [asyncio.create_task(consume(), name="inbound-worker")]
    purges: dict[str, retention.Purge] = {}
    if (alert_days := s.ops.alert_retention_days) > 0:
        purges["crisis_alerts"] = lambda now: purge_alerts(
            app[K.REDIS], app[K.KEYS], before=now - alert_days * 86400
        )
    if (days := s.escalation.resolved_retention_days) > 0:
        tickets = TicketStore(app[K.REDIS], app[K.KEYS], s.escalation)
        purges["resolved_tickets"] = lambda now: tickets.purge_resolved(before=now - days * 86400)
    if s.worker.stream_retention_s > 0 or s.worker.dead_retention_s > 0 or purges:
        trim = retention.run(
            app[K.REDIS],
            app[K.KEYS],
            s.worker.stream_retention_s,
            stop,
            dead_keep_s=s.worker.dead_retention_s,
            purges=purges,
        )
        tasks.append(asyncio.create_task(trim, name="stream-retention"))
    return tasks


async def _brain_ctx(app: web.Application) -> AsyncIterator[None]:
    """NLU service (started here; or one already in SERVICES["nlu"], left open) + Brain.

    Started in the background (``STARTING``): loading takes seconds and a first start
    trains for up to a minute, during which /healthz must answer (a liveness probe would
    restart the process, and each restart trains from nothing); /readyz says 503 and the
    inbound worker waits until the pipeline is ready."""
    from bot.nlu import build_service

    s = app[K.SETTINGS]
    nlu = app[K.SERVICES].get("nlu")
    owned = nlu is None
    if nlu is None:
        nlu = build_service(s.nlu, data_dir=s.redis.data_dir)
        app[K.SERVICES]["nlu"] = nlu
    pipeline = app[K.PIPELINE]
    assert isinstance(pipeline, LazyBrain)

    async def start() -> None:
        if owned:
            await nlu.start()
        pipeline.brain = build_brain(app[K.REDIS], app[K.KEYS], s, nlu, app[K.HTTP])

    task = asyncio.create_task(start(), name="nlu-start")
    app[STARTING].append(task)
    try:
        yield
    finally:
        task.cancel()  # a training stops at its next step (NluService.start)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task  # its error, if any, is the runner's to report
        if owned:
            await nlu.close()


async def _sla_scanner_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[K.SETTINGS]
    store = TicketStore(app[K.REDIS], app[K.KEYS], s.escalation)
    notifier = Notifier(public_url=s.server.public_url)  # delivered by the ops notify loop
    stop = asyncio.Event()
    task = asyncio.create_task(
        SlaScanner(store, notifier).run(stop, s.escalation.scan_interval_s), name="sla-scanner"
    )
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "role": request.app[K.ROLE]})


async def _readyz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, bool] = {}
    try:
        # A write, not a PING: a Redis at maxmemory (noeviction) or a replica left behind
        # by a failover answers PING but refuses every event this process would store.
        probe = app[K.REDIS].set(app[K.KEYS].ns("readyz"), b"1", px=10_000)
        checks["redis"] = bool(await asyncio.wait_for(probe, timeout=1.0))
    except Exception:
        checks["redis"] = False
    if K.PIPELINE in app:
        checks["pipeline"] = bool(app[K.PIPELINE].ready)
    ok = all(checks.values())
    return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)


async def _metrics(request: web.Request) -> web.Response:
    try:  # the scrape still answers when Redis is down, and says so
        await refresh_stream_gauges(request.app[K.REDIS], request.app[K.KEYS])
        metrics.REDIS_UP.set(1)
    except Exception:
        metrics.REDIS_UP.set(0)
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
