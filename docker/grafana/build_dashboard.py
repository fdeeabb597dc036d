"""Writes dashboards/replydesk.json: python docker/grafana/build_dashboard.py

The dashboard is generated so panels stay uniform and every query is in one readable
list; tests/test_docker.py checks the JSON is current and uses only real metric names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards" / "replydesk.json"
DS = {"type": "prometheus", "uid": "prometheus"}
R = "$__rate_interval"

# (row title, [(panel title, unit, [(expr, legend)], kind)])
ROWS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]], str]]]] = [
    (
        "Traffic",
        [
            (
                "Inbound events by outcome",
                "ops",
                [(f"sum by (outcome) (rate(replydesk_ingest_events_total[{R}]))", "{{outcome}}")],
                "ts",
            ),
            (
                "Webhook requests by result (refusals)",
                "reqps",
                [(f"sum by (result) (rate(replydesk_ingest_requests_total[{R}]))", "{{result}}")],
                "ts",
            ),
            (
                "Webhook ack latency p95",
                "s",
                [
                    (
                        f"histogram_quantile(0.95, sum by (le, platform) (rate(replydesk_ingest_ack_seconds_bucket[{R}])))",
                        "{{platform}}",
                    )
                ],
                "ts",
            ),
        ],
    ),
    (
        "Decisions and language understanding",
        [
            (
                "Decisions",
                "ops",
                [(f"sum by (decision) (rate(replydesk_decisions_total[{R}]))", "{{decision}}")],
                "ts",
            ),
            (
                "Auto-answer rate",
                "percentunit",
                [("replydesk:auto_answer_ratio:rate15m", "auto-answered")],
                "stat",
            ),
            (
                "Intent fallback rate (out of scope)",
                "percentunit",
                [("replydesk:intent_fallback_ratio:rate15m", "out_of_scope")],
                "stat",
            ),
            (
                "Top intents",
                "ops",
                [(f"topk(10, sum by (intent) (rate(replydesk_intents_total[{R}])))", "{{intent}}")],
                "ts",
            ),
            (
                "NLU parse latency",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le, backend) (rate(replydesk_nlu_parse_seconds_bucket[{R}])))",
                        "p50 {{backend}}",
                    ),
                    (
                        f"histogram_quantile(0.95, sum by (le, backend) (rate(replydesk_nlu_parse_seconds_bucket[{R}])))",
                        "p95 {{backend}}",
                    ),
                ],
                "ts",
            ),
            (
                "Rasa fallbacks",
                "ops",
                [
                    (
                        f"sum by (reason) (rate(replydesk_nlu_rasa_fallbacks_total[{R}]))",
                        "{{reason}}",
                    )
                ],
                "ts",
            ),
        ],
    ),
    (
        "Latency",
        [
            (
                "Event received to reply delivered",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le) (rate(replydesk_event_to_reply_seconds_bucket[{R}])))",
                        "p50",
                    ),
                    (
                        f"histogram_quantile(0.95, sum by (le) (rate(replydesk_event_to_reply_seconds_bucket[{R}])))",
                        "p95",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (le) (rate(replydesk_event_to_reply_seconds_bucket[{R}])))",
                        "p99",
                    ),
                ],
                "ts",
            ),
            (
                "Worker time per event p95",
                "s",
                [
                    (
                        f"histogram_quantile(0.95, sum by (le) (rate(replydesk_worker_event_seconds_bucket[{R}])))",
                        "p95",
                    )
                ],
                "ts",
            ),
            (
                "Worker results",
                "ops",
                [
                    (f"sum by (result) (rate(replydesk_worker_events_total[{R}]))", "{{result}}"),
                    (f"sum(rate(replydesk_worker_reclaimed_total[{R}]))", "reclaimed"),
                    (
                        f"sum by (consumer_role) (rate(replydesk_worker_leases_lost_total[{R}]))",
                        "lease lost ({{consumer_role}})",
                    ),
                ],
                "ts",
            ),
        ],
    ),
    (
        "Outbound",
        [
            (
                "Sends by result",
                "ops",
                [
                    (
                        f"sum by (platform, result) (rate(replydesk_outbound_sends_total[{R}]))",
                        "{{platform}} {{result}}",
                    )
                ],
                "ts",
            ),
            (
                "Retries and errors",
                "ops",
                [
                    (
                        f"sum by (platform) (rate(replydesk_outbound_retries_total[{R}]))",
                        "retries {{platform}}",
                    ),
                    (
                        f"sum by (platform, status_class) (rate(replydesk_outbound_errors_total[{R}]))",
                        "errors {{platform}} {{status_class}}",
                    ),
                ],
                "ts",
            ),
            (
                "Rate-limit waits",
                "s",
                [
                    (
                        f"histogram_quantile(0.95, sum by (le, platform) (rate(replydesk_outbound_ratelimit_wait_seconds_bucket[{R}])))",
                        "p95 wait {{platform}}",
                    ),
                    (
                        f"sum by (platform) (rate(replydesk_outbound_ratelimit_waits_total[{R}]))",
                        "waits/s {{platform}}",
                    ),
                ],
                "ts",
            ),
            (
                "Dead letters (last hour)",
                "short",
                [("sum by (source) (increase(replydesk_dead_letters_total[1h]))", "{{source}}")],
                "stat",
            ),
        ],
    ),
    (
        "Escalation and SLA",
        [
            ("Open tickets", "short", [("sum(max by (priority) (replydesk_tickets_open))", "open")], "stat"),
            (
                "Tickets opened by priority",
                "ops",
                [
                    (
                        f"sum by (priority) (rate(replydesk_tickets_opened_total[{R}]))",
                        "{{priority}}",
                    )
                ],
                "ts",
            ),
            (
                "First response time",
                "s",
                [
                    (
                        "histogram_quantile(0.5, sum by (le, priority) (rate(replydesk_first_response_seconds_bucket[1h])))",
                        "p50 {{priority}}",
                    ),
                    (
                        "histogram_quantile(0.9, sum by (le, priority) (rate(replydesk_first_response_seconds_bucket[1h])))",
                        "p90 {{priority}}",
                    ),
                ],
                "ts",
            ),
            (
                "SLA at risk and breached (last hour)",
                "short",
                [("sum by (kind) (increase(replydesk_sla_alerts_total[1h]))", "{{kind}}")],
                "stat",
            ),
        ],
    ),
    (
        "Streams",
        [
            (
                "Stream lag (not yet delivered)",
                "short",
                [("max by (stream) (replydesk_stream_lag)", "{{stream}}")],
                "ts",
            ),
            (
                "Stream pending (delivered, not acked)",
                "short",
                [("max by (stream) (replydesk_stream_pending)", "{{stream}}")],
                "ts",
            ),
            (
                "Stream length",
                "short",
                [("max by (stream) (replydesk_stream_length)", "{{stream}}")],
                "ts",
            ),
        ],
    ),
    (
        "Crisis alerts",
        [
            (
                "Active crisis alerts",
                "short",
                [("max by (account) (replydesk_crisis_active)", "{{account}}")],
                "stat",
            ),
            (
                "Negative messages in window vs baseline",
                "short",
                [
                    ("max by (account) (replydesk_negative_window_messages)", "window {{account}}"),
                    (
                        "max by (account) (replydesk_negative_baseline_messages)",
                        "baseline {{account}}",
                    ),
                ],
                "ts",
            ),
            (
                "Negative messages",
                "ops",
                [
                    (
                        f"sum by (account, kind) (rate(replydesk_negative_messages_total[{R}]))",
                        "{{account}} {{kind}}",
                    )
                ],
                "ts",
            ),
            (
                "Crisis alerts and notifications (last day)",
                "short",
                [
                    (
                        "sum by (transition) (increase(replydesk_crisis_alerts_total[1d]))",
                        "{{transition}}",
                    ),
                    (
                        "sum by (result) (increase(replydesk_notifications_total[1d]))",
                        "notify {{result}}",
                    ),
                ],
                "stat",
            ),
        ],
    ),
    (
        "Processes",
        [
            ("Up", "short", [('up{job=~"replydesk-.*"}', "{{instance}}")], "ts"),
            ("Redis reachable", "short", [("replydesk_redis_up", "{{instance}}")], "ts"),
            (
                "CPU",
                "percentunit",
                [(f"rate(process_cpu_seconds_total[{R}])", "{{instance}}")],
                "ts",
            ),
            ("Resident memory", "bytes", [("process_resident_memory_bytes", "{{instance}}")], "ts"),
            ("Open file descriptors", "short", [("process_open_fds", "{{instance}}")], "ts"),
        ],
    ),
]


def panel(
    pid: int, title: str, unit: str, targets: list[tuple[str, str]], kind: str, x: int, y: int
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries" if kind == "ts" else "stat",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "ts"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for title, row in ROWS:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y = pid + 1, y + 1
        for i, (ptitle, unit, targets, kind) in enumerate(row):
            panels.append(panel(pid, ptitle, unit, targets, kind, (i % 3) * 8, y + (i // 3) * 8))
            pid += 1
        y += ((len(row) + 2) // 3) * 8
    return {
        "uid": "replydesk",
        "title": "replydesk",
        "tags": ["replydesk"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
