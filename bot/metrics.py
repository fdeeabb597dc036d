"""Prometheus metrics: every metric of the service is defined here, in one place.

Naming follows Prometheus conventions (``replydesk_`` prefix, units in names, ``_total``
counters). Labels are bounded sets (platform, account, kind, outcome, decision, intent,
priority); never user ids or message text.

Each process exposes its own ``/metrics`` (web and worker roles alike); Prometheus
scrapes every process, and dashboards aggregate with ``sum by``. Stream gauges are
read from Redis at scrape time, so any process reports the shared truth.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# Default process and platform collectors, on our own registry.
try:  # pragma: no cover - depends on the OS
    from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR  # noqa: F401
    from prometheus_client.process_collector import ProcessCollector

    ProcessCollector(registry=REGISTRY)
except Exception:  # pragma: no cover
    pass

_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# -- ingest -------------------------------------------------------------------
INGEST_EVENTS = Counter(
    "replydesk_ingest_events_total",
    "Webhook events by platform, kind and outcome (accepted, duplicate, own, ignored).",
    ["platform", "kind", "outcome"],
    registry=REGISTRY,
)
INGEST_REQUESTS = Counter(
    "replydesk_ingest_requests_total",
    "Webhook requests by platform and result (ok, unauthorized, malformed, too_large, not_found, error).",
    ["platform", "result"],
    registry=REGISTRY,
)
INGEST_LATENCY = Histogram(
    "replydesk_ingest_ack_seconds",
    "Time from webhook request to the platform's 200 (events durable in Redis).",
    ["platform"],
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
INGEST_BATCH = Histogram(
    "replydesk_ingest_batch_events",
    "Events written to Redis per round trip by the ingest writer.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)

# -- workers ------------------------------------------------------------------
WORKER_EVENTS = Counter(
    "replydesk_worker_events_total",
    "Inbound events handled by workers, by result (done, failed, dead, skipped_done).",
    ["result"],
    registry=REGISTRY,
)
WORKER_RECLAIMED = Counter(
    "replydesk_worker_reclaimed_total",
    "Events reclaimed from a consumer that exceeded the visibility timeout.",
    registry=REGISTRY,
)
WORKER_LEASES_LOST = Counter(
    "replydesk_worker_leases_lost_total",
    "Entries taken over by another consumer while this one was still handling them "
    "(the process stalled past the visibility timeout), by consumer_role (worker, sender).",
    # Not "role": that is the scrape target's label (docker/prometheus.yml), and
    # Prometheus would rename ours to exported_role.
    ["consumer_role"],
    registry=REGISTRY,
)
WORKER_SECONDS = Histogram(
    "replydesk_worker_event_seconds",
    "Time a worker spends on one inbound event (pipeline and stores).",
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "replydesk_dead_letters_total",
    "Events and replies moved to the dead stream, by source (inbound, outbox).",
    ["source"],
    registry=REGISTRY,
)
STREAM_LENGTH = Gauge(
    "replydesk_stream_length",
    "Entries in a Redis stream.",
    ["stream"],
    registry=REGISTRY,
)
REDIS_UP = Gauge(
    "replydesk_redis_up",
    "1 when this process could read Redis at the latest scrape, else 0 (the stream gauges"
    " then keep their last values).",
    registry=REGISTRY,
)
STREAM_LAG = Gauge(
    "replydesk_stream_lag",
    "Entries in a stream not yet delivered to its consumer group.",
    ["stream"],
    registry=REGISTRY,
)
STREAM_PENDING = Gauge(
    "replydesk_stream_pending",
    "Entries delivered to a consumer group but not yet acknowledged.",
    ["stream"],
    registry=REGISTRY,
)

# -- decisions ----------------------------------------------------------------
DECISIONS = Counter(
    "replydesk_decisions_total",
    "Pipeline decisions by platform, kind and decision (answer, escalate, ignore, append).",
    ["platform", "kind", "decision"],
    registry=REGISTRY,
)
INTENTS = Counter(
    "replydesk_intents_total",
    "Top intent of each parsed message (out_of_scope when below threshold).",
    ["intent"],
    registry=REGISTRY,
)
EVENT_TO_REPLY = Histogram(
    "replydesk_event_to_reply_seconds",
    "End-to-end latency: event received by ingest to reply delivered to the platform.",
    ["platform", "source"],
    buckets=_E2E_BUCKETS,
    registry=REGISTRY,
)

# -- language understanding (bot.nlu) -------------------------------------------
NLU_PARSE_SECONDS = Histogram(
    "replydesk_nlu_parse_seconds",
    "Time to parse one message (queueing, micro-batch and backend), by backend.",
    ["backend"],
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
NLU_BATCH_SIZE = Histogram(
    "replydesk_nlu_batch_size",
    "Messages per encoder call in the NLU micro-batcher.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
NLU_RASA_FALLBACKS = Counter(
    "replydesk_nlu_rasa_fallbacks_total",
    "Messages parsed by the embedded engine because the Rasa server failed, by reason.",
    ["reason"],
    registry=REGISTRY,
)

NLU_DATA_INVALID = Gauge(
    "replydesk_nlu_data_invalid",
    "1 while this worker serves its previous model because the edited training data "
    "does not load (the error is in the nlu.data_invalid log line).",
    registry=REGISTRY,
)

# -- ops: crisis alerts (bot.ops) ----------------------------------------------
NEGATIVE_MESSAGES = Counter(
    "replydesk_negative_messages_total",
    "Messages the pipeline judged negative, by platform, account and kind.",
    ["platform", "account", "kind"],
    registry=REGISTRY,
)
CRISIS_ALERTS = Counter(
    "replydesk_crisis_alerts_total",
    "Crisis alert transitions per account (raised, cleared); each counted once cluster-wide.",
    ["account", "transition"],
    registry=REGISTRY,
)
CRISIS_ACTIVE = Gauge(
    "replydesk_crisis_active",
    "1 while a crisis alert is active for the account (read from Redis by each worker).",
    ["account"],
    registry=REGISTRY,
)
NEGATIVE_WINDOW = Gauge(
    "replydesk_negative_window_messages",
    "Negative messages in the account's rolling spike window (read from Redis).",
    ["account"],
    registry=REGISTRY,
)
NEGATIVE_BASELINE = Gauge(
    "replydesk_negative_baseline_messages",
    "The account's expected negative messages per spike window (EWMA baseline).",
    ["account"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "replydesk_notifications_total",
    "Outgoing notification webhook posts by kind (crisis, sla) and result (ok, error, dropped, disabled).",
    ["kind", "result"],
    registry=REGISTRY,
)

# -- escalation (tickets, SLA) ---------------------------------------------------
TICKETS_OPENED = Counter(
    "replydesk_tickets_opened_total",
    "Tickets opened, by priority and channel (mention, dm).",
    ["priority", "channel"],
    registry=REGISTRY,
)
TICKETS_RESOLVED = Counter(
    "replydesk_tickets_resolved_total",
    "Tickets resolved, by priority at resolution.",
    ["priority"],
    registry=REGISTRY,
)
TICKETS_OPEN = Gauge(
    "replydesk_tickets_open",
    "Open tickets (the agent queue depth) by priority, read from Redis by every SLA scanner.",
    ["priority"],
    registry=REGISTRY,
)
FIRST_RESPONSE = Histogram(
    "replydesk_first_response_seconds",
    "Ticket created to first human reply, by priority.",
    ["priority"],
    buckets=(60, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400),
    registry=REGISTRY,
)
SLA_ALERTS = Counter(
    "replydesk_sla_alerts_total",
    "SLA alerts fired, by kind (at_risk, breach), clock and priority after the alert.",
    ["kind", "clock", "priority"],
    registry=REGISTRY,
)
AGENT_API_REQUESTS = Counter(
    "replydesk_agent_api_requests_total",
    "Agent API requests by operation and HTTP status class.",
    ["op", "status"],
    registry=REGISTRY,
)

# -- outbound (platform senders) ----------------------------------------------
OUTBOUND_SENDS = Counter(
    "replydesk_outbound_sends_total",
    "Replies handled by the sender, by platform, kind and result "
    "(sent, duplicate, dead, unknown, undeliverable).",
    ["platform", "kind", "result"],
    registry=REGISTRY,
)
OUTBOUND_RETRIES = Counter(
    "replydesk_outbound_retries_total",
    "Send attempts retried after a 429, 5xx or network error.",
    ["platform"],
    registry=REGISTRY,
)
OUTBOUND_ERRORS = Counter(
    "replydesk_outbound_errors_total",
    "Failed sends by status class (429, 4xx, 5xx, network; invalid = refused before calling).",
    ["platform", "status_class"],
    registry=REGISTRY,
)
OUTBOUND_RATELIMIT_WAIT = Histogram(
    "replydesk_outbound_ratelimit_wait_seconds",
    "Time a send waited for a rate-limit token (only sends that waited).",
    ["platform"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0),
    registry=REGISTRY,
)
OUTBOUND_RATELIMIT_WAITS = Counter(
    "replydesk_outbound_ratelimit_waits_total",
    "Sends that had to wait for a rate-limit token.",
    ["platform"],
    registry=REGISTRY,
)
PLATFORM_STREAM_RECONNECTS = Counter(
    "replydesk_platform_stream_reconnects_total",
    "Reconnects of platform streaming clients (Mastodon SSE), by platform.",
    ["platform"],
    registry=REGISTRY,
)
PLATFORM_STREAM_CATCHUP = Counter(
    "replydesk_platform_stream_catchup_events_total",
    "Events recovered by catch-up polling after a stream (re)connect.",
    ["platform"],
    registry=REGISTRY,
)

# -- series that exist from the start ---------------------------------------------
# A labelled child appears on its first inc(), at 1, and Prometheus' increase()/rate()
# count nothing into a series' first sample: the first dead letter, lost lease, failed
# notification or SLA breach of a process would never reach the alerts that watch them
# (docker/prometheus-rules.yml), nor a process's first crisis alert or ticket the
# dashboard's counts. So the label values known here start at 0; the per-account ones
# once the config is read (start_accounts_at_zero, from bot/app.py).
DEAD_LETTER_SOURCES = ("inbound", "outbox")
CONSUMER_ROLES = ("worker", "sender")  # StreamConsumer.role of InboundWorker, Sender
WORKER_RESULTS = ("done", "failed", "dead", "skipped_done")
RASA_FALLBACK_REASONS = ("timeout", "http", "connection", "bad_response")
NOTIFICATION_KINDS = ("crisis", "sla")
NOTIFICATION_RESULTS = ("ok", "error", "dropped", "disabled")
SLA_ALERT_KINDS = ("at_risk", "breach")
SLA_CLOCKS = ("first_response", "next_response", "resolution")  # escalation.sla.CLOCKS
SLA_PRIORITIES = ("urgent", "high", "normal", "low")  # the default escalation.policies
TICKET_CHANNELS = ("mention", "dm")  # escalation.sla.CHANNELS
CRISIS_TRANSITIONS = ("raised", "cleared")


def _start_at_zero() -> None:
    for source in DEAD_LETTER_SOURCES:
        DEAD_LETTERS.labels(source)
    for role in CONSUMER_ROLES:
        WORKER_LEASES_LOST.labels(consumer_role=role)
    for result in WORKER_RESULTS:
        WORKER_EVENTS.labels(result)
    for reason in RASA_FALLBACK_REASONS:
        NLU_RASA_FALLBACKS.labels(reason=reason)
    for kind in NOTIFICATION_KINDS:
        for result in NOTIFICATION_RESULTS:
            NOTIFICATIONS.labels(kind, result)
    for kind in SLA_ALERT_KINDS:
        for clock in SLA_CLOCKS:
            for priority in SLA_PRIORITIES:
                SLA_ALERTS.labels(kind, clock, priority)
    for priority in SLA_PRIORITIES:
        TICKETS_RESOLVED.labels(priority)
        for channel in TICKET_CHANNELS:
            TICKETS_OPENED.labels(priority, channel)


_start_at_zero()


def start_accounts_at_zero(accounts: Iterable[tuple[str, str]], kinds: Iterable[str]) -> None:
    """The per-account series, for the configured (platform, account) pairs once the
    config is read: a worker's first negative post counts towards the spike rules, and
    its first crisis alert towards the dashboard's count of them."""
    kinds = tuple(kinds)
    for platform, account in accounts:
        for kind in kinds:
            NEGATIVE_MESSAGES.labels(platform, account, kind)
        for transition in CRISIS_TRANSITIONS:
            CRISIS_ALERTS.labels(account, transition)
