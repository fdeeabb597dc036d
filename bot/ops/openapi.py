"""OpenAPI path items of the ops routes, merged into the agent API's document."""

from __future__ import annotations

from typing import Any

_ERR = {"$ref": "#/components/responses/Error"}


def _q(name: str, desc: str, *, required: bool = False, kind: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": desc,
        "schema": {"type": kind},
    }


PATHS: dict[str, Any] = {
    "/alerts": {
        "get": {
            "summary": "Crisis alerts (negative-message spikes per account), newest first",
            "description": (
                "Each alert: id, account, status (active|cleared), raised_at, cleared_at, "
                "window_count, peak, baseline, threshold, message_count. The console shows "
                "active ones as a banner; `alert.raised`/`alert.cleared` also arrive on /events."
            ),
            "parameters": [
                _q("status", "active or cleared"),
                _q("account", "only this account"),
                _q(
                    "limit",
                    "at most this many: 1 or more, capped at 500 (default 50)",
                    kind="integer",
                ),
            ],
            "responses": {"200": {"description": "{alerts: [...]}"}, "400": _ERR, "401": _ERR},
        }
    },
    "/alerts/{alert_id}": {
        "get": {
            "summary": "One crisis alert with the spike's messages grouped",
            "description": (
                "messages: [{key, event_id, platform, kind, author, followers, text, intent, "
                "at}] — the window's negative messages at raise time and every one after "
                "while active (newest `messages` of them, default 200)."
            ),
            "parameters": [
                {"name": "alert_id", "in": "path", "required": True, "schema": {"type": "string"}},
                _q("messages", "how many of the newest messages (default 200)", kind="integer"),
            ],
            "responses": {
                "200": {"description": "the alert"},
                "400": _ERR,
                "401": _ERR,
                "404": _ERR,
            },
        }
    },
    "/insights": {
        "get": {
            "summary": "An account's hot words, top intents, auto-answer rate, first responses",
            "description": (
                "rising_terms.{negative,all}: terms (jieba for Chinese, stop words removed) "
                "whose count in the recent window beats the baseline window before it; "
                "top_terms, top_intents, decisions, auto_answer_rate (answer / decisions "
                "other than ignore), first_response {count, median_s, p90_s, mean_s}."
            ),
            "parameters": [
                _q("account", "account id", required=True),
                _q("limit", "rows per list: 1 or more, capped at 100 (default 15)", kind="integer"),
            ],
            "responses": {
                "200": {"description": "insights"},
                "400": _ERR,
                "401": _ERR,
                "404": _ERR,
            },
        }
    },
}
