"""The OpenAPI 3.1 document of the agent API (served at /api/v1/openapi.json).

Hand-written so it reads as documentation; tests check every route is described.
"""

from __future__ import annotations

from typing import Any

from bot.ops.openapi import PATHS as OPS_PATHS  # /alerts, /insights (bot.ops)

_ERR = {"$ref": "#/components/responses/Error"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ticket_resp(desc: str = "The ticket after the change") -> dict[str, Any]:
    return {
        "description": desc,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"ticket": _ref("Ticket")},
                    "required": ["ticket"],
                }
            }
        },
    }


def _get_errors(*codes: str) -> dict[str, Any]:
    """Every route but /openapi.json needs an agent (401) and Redis (503 ``unavailable``)."""
    return {c: _ERR for c in sorted({"401", "503", *codes})}


def _post_errors(*codes: str) -> dict[str, Any]:
    """Every POST reads a JSON body (400 ``bad_json``, 413 ``too_large``; 422 ``invalid``
    when it is not an object), needs an agent (401), and may find the ticket changing too
    fast (503 ``busy``)."""
    return _get_errors("400", "413", "422", *codes)


def _action(
    summary: str,
    *,
    body: dict[str, Any] | None = None,
    extra: str = "",
    supervisor: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": extra,
        "parameters": [{"$ref": "#/components/parameters/TicketId"}],
        "responses": {
            "200": _ticket_resp(),
            # 403 only for the supervisor's actions: the others need no role.
            **_post_errors("404", "409", *(["403"] if supervisor else [])),
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return {"post": op}


_CLOCK = {
    "type": "object",
    "properties": {
        "state": {
            "enum": [
                "not_started",
                "running",
                "at_risk",
                "breached",
                "met",
                "missed",
                "not_applicable",
            ],
            "description": "not_applicable: a response clock ended by resolving the ticket "
            "before its deadline without a human reply (past the deadline it is missed)",
        },
        "started_at": {"type": ["number", "null"]},
        "due_at": {"type": ["number", "null"]},
        "at_risk_at": {"type": ["number", "null"]},
        "stopped_at": {"type": ["number", "null"]},
        "remaining_s": {"type": ["number", "null"]},
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "replydesk agent API",
        "version": "1",
        "description": (
            "Support agents work escalated conversations here. Authenticate with "
            "`Authorization: Bearer <token>` (from `replydesk agents add`) or the console's "
            "`replydesk_session` cookie plus `X-CSRF-Token` on POSTs. Times are epoch seconds. "
            'Errors are `{"error": {"code", "message", ...}}`. Any path below asked with a '
            "method it does not list answers 405 `method_not_allowed`, with an `Allow` header "
            "naming the methods it takes; an unknown path answers 404 `not_found`."
        ),
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}, {"session": []}],
    "paths": {
        "/me": {
            "get": {
                "summary": "The calling agent",
                "responses": {
                    "200": {
                        "description": "Agent",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"agent": _ref("Agent")}}
                            }
                        },
                    },
                    **_get_errors(),
                },
            }
        },
        "/tickets": {
            "get": {
                "summary": "The queue, ordered by the next SLA due time (resolved: newest first)",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": ["open", "resolved"], "default": "open"},
                    },
                    {"name": "priority", "in": "query", "schema": _ref("Priority")},
                    {"name": "account", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "assignee",
                        "in": "query",
                        "description": "agent name, `me`, or `none` (unclaimed)",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "customer",
                        "in": "query",
                        "description": "the customer's tickets: their handle (any case, with "
                        "or without a leading `@`) or platform user id (exact); message text "
                        "is not searched",
                        "schema": {"type": "string", "maxLength": 128},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "description": "the `next` of the previous page: the tickets after it",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Tickets",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "tickets": {"type": "array", "items": _ref("Ticket")},
                                        "next": {
                                            "type": ["string", "null"],
                                            "description": "a full page: pass as `after` "
                                            "for the next one (null: no more)",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    **_get_errors("422"),
                },
            }
        },
        "/tickets/{id}": {
            "get": {
                "summary": "A ticket with its conversation, notes and history",
                "parameters": [{"$ref": "#/components/parameters/TicketId"}],
                "responses": {
                    "200": {
                        "description": "Ticket detail",
                        "content": {"application/json": {"schema": _ref("TicketDetail")}},
                    },
                    **_get_errors("404"),
                },
            }
        },
        "/tickets/{id}/claim": _action(
            "Claim (or renew the claim on) a ticket",
            extra="A claim is a lease of escalation.claim_lease_s seconds; claim again to renew. "
            "409 `claimed` with `owner` when another agent holds a live claim.",
        ),
        "/tickets/{id}/release": _action(
            "Give up the claim (supervisors may release anyone's); 409 `not_open` if resolved"
        ),
        "/tickets/{id}/reply": {
            "post": {
                **_action(
                    "Reply to the customer through the platform",
                    body={
                        "type": "object",
                        "required": ["text"],
                        "properties": {
                            "text": {"type": "string", "minLength": 1, "maxLength": 5000},
                            "channel": {
                                "enum": ["dm", "public"],
                                "description": "default: where the customer last wrote "
                                "(`last_kind`). `public` answers the customer's latest public "
                                "mention; 409 `no_public_mention` when there is none",
                            },
                            "idempotency_key": {
                                "type": "string",
                                "pattern": "^[A-Za-z0-9._:-]{1,64}$",
                                "description": "or the Idempotency-Key header; a retry with the "
                                "same key sends nothing new and re-queues the recorded reply. "
                                "Without one, the same agent, channel and text answering the "
                                "same customer message count as a retry",
                            },
                        },
                    },
                    extra="Claims an unclaimed ticket; 409 when another agent holds it. Stops the "
                    "first-response and next-response clocks. Delivered by the outbox sender. "
                    "409 `window_closed` when the platform's reply window no longer allows it "
                    "(Weibo: unfollowed, 48 h passed, the mention's one reply used); 422 "
                    "`too_long` (with `length`, `limit`) when the text as posted, counting the "
                    "`@handle ` Mastodon puts first, is over the platform's limit.",
                )["post"],
                "responses": {
                    "200": {
                        "description": "Queued",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "ticket": _ref("Ticket"),
                                        "reply_id": {"type": "string"},
                                        "created": {"type": "boolean"},
                                    },
                                }
                            }
                        },
                    },
                    **_post_errors("404", "409"),
                },
                "parameters": [
                    {"$ref": "#/components/parameters/TicketId"},
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "description": "as the body's idempotency_key (the body's wins)",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
                    },
                ],
            }
        },
        "/tickets/{id}/notes": {
            "post": {
                "summary": "Add an internal note (never sent to the customer)",
                "parameters": [{"$ref": "#/components/parameters/TicketId"}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["text"],
                                "properties": {
                                    "text": {"type": "string", "minLength": 1, "maxLength": 5000}
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "The note",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"note": _ref("Note")}}
                            }
                        },
                    },
                    **_post_errors("404"),
                },
            }
        },
        "/tickets/{id}/assign": _action(
            "Assign to an agent (supervisor); 409 `not_open` if resolved",
            supervisor=True,
            body={
                "type": "object",
                "required": ["agent"],
                "properties": {
                    "agent": {"type": "string", "description": "an active agent's name"}
                },
            },
        ),
        "/tickets/{id}/priority": _action(
            "Change the priority (supervisor); running SLA deadlines are recomputed (a breached "
            "clock keeps the deadline it missed); 409 `not_open` if resolved",
            supervisor=True,
            body={
                "type": "object",
                "required": ["priority"],
                "properties": {"priority": _ref("Priority")},
            },
        ),
        "/tickets/{id}/resolve": _action(
            "Resolve: stops every clock and hands the conversation back to the bot",
            extra="A response clock no human reply answered ends `not_applicable` (or "
            "`missed` past its deadline), never `met`.",
        ),
        "/tickets/{id}/reopen": _action(
            "Reopen a resolved ticket (409 when the customer has a newer open ticket)",
            extra="Restarts the resolution clock, and the first-response clock when no human "
            "has replied yet.",
        ),
        "/events": {
            "get": {
                "summary": "Server-sent events: ticket changes and SLA alerts",
                "description": (
                    "`text/event-stream`. Each event has `id` (resume with Last-Event-ID or "
                    "?since=), `event` (ticket.created, ticket.message, ticket.claimed, "
                    "ticket.renewed, ticket.released, ticket.assigned, ticket.priority, "
                    "ticket.note, ticket.replied, ticket.resolved, ticket.reopened, "
                    "ticket.delivery, sla.at_risk, sla.breach) and `data` (JSON: ticket_id, "
                    "status, priority, at, and per type: assignee, clock, due_at, from, "
                    "reason, author; ticket.delivery: reply_id and state `sent` or "
                    "`not_delivered`, and from the sender only ticket_id and at). "
                    "Comment lines keep the connection alive. The stream ends when the "
                    "caller's token is revoked or the session ends, or on a server error "
                    "(reconnect with Last-Event-ID). A stream id outside Redis's range (each "
                    "part below 2^64) is 422."
                ),
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "description": "resume after this stream id (e.g. 1700000000000-0)",
                        "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "description": "as Last-Event-ID, for clients that cannot set headers",
                        "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
                    },
                ],
                "responses": {
                    "200": {"description": "event stream", "content": {"text/event-stream": {}}},
                    **_get_errors("422"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI"}},
            }
        },
        **OPS_PATHS,
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "replydesk_session"},
        },
        "parameters": {
            "TicketId": {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^T[0-9]+$"},
            }
        },
        "responses": {
            "Error": {
                "description": "Error",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "error": {
                                    "type": "object",
                                    "required": ["code", "message"],
                                    "properties": {
                                        "code": {
                                            "type": "string",
                                            "description": "unauthorized, forbidden, not_found, "
                                            "method_not_allowed, bad_json, too_large, "
                                            "invalid, too_long (with length, limit), claimed (with "
                                            "owner), not_open, not_resolved, no_public_mention, "
                                            "window_closed (with platform), duplicate, "
                                            "conversation_has_ticket, busy, unavailable (Redis "
                                            "unreachable: 503 with Retry-After, on any route)",
                                        },
                                        "message": {"type": "string"},
                                        "owner": {"type": "string"},
                                        "field": {"type": "string"},
                                        "length": {"type": "integer"},
                                        "limit": {"type": "integer"},
                                        "platform": {"type": "string"},
                                    },
                                }
                            },
                        }
                    }
                },
            }
        },
        "schemas": {
            "Priority": {"enum": ["low", "normal", "high", "urgent"]},
            "Agent": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "role": {"enum": ["agent", "supervisor"]},
                },
            },
            "Ticket": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "status": {"enum": ["open", "resolved"]},
                    "priority": _ref("Priority"),
                    "platform": {"type": "string"},
                    "account": {"type": "string"},
                    "channel": {
                        "enum": ["mention", "dm"],
                        "description": "where the ticket started",
                    },
                    "last_kind": {
                        "enum": ["mention", "dm"],
                        "description": "kind of the customer's latest message: where a reply "
                        "goes by default",
                    },
                    "last_preview": {
                        "type": "string",
                        "description": "the customer's latest message on one line (whitespace "
                        "collapsed), cut at 100 characters with an ellipsis; empty on tickets "
                        "whose latest message came before previews were kept. Customer text: "
                        "show it as text, never as markup",
                    },
                    "customer": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "handle": {"type": "string"},
                            "followers": {"type": "integer"},
                            "verified": {"type": "boolean"},
                        },
                    },
                    "reason": {
                        "type": "string",
                        "description": "complaint, negative, tone, human_request, follow_up, unclear, ...",
                    },
                    "reasons": {
                        "type": "object",
                        "description": "the bot's decision reasons: rule, intent, confidence, faq_score, negativity",
                    },
                    "created_at": {"type": "number"},
                    "updated_at": {"type": "number"},
                    "resolved_at": {"type": ["number", "null"]},
                    "assignee": {
                        "type": ["string", "null"],
                        "description": "holder of a live claim",
                    },
                    "lease_until": {"type": ["number", "null"]},
                    "messages": {"type": "integer"},
                    "due_at": {
                        "type": ["number", "null"],
                        "description": "earliest running SLA deadline",
                    },
                    "sla": {
                        "type": "object",
                        "properties": {
                            "first_response": _CLOCK,
                            "next_response": _CLOCK,
                            "resolution": _CLOCK,
                        },
                    },
                    "reply_window": {
                        "type": ["object", "null"],
                        "description": "null when the platform has none. Weibo: dm {closes_at, open, "
                        "closing_soon, remaining_s} (48 h after the customer's last DM) and "
                        "mention {replies_left, open} (one reply per mention, for the latest "
                        "public mention). In the listing an estimate from the ticket; in "
                        "GET /tickets/{id} from the platform's window state, with mention.used "
                        "and that state's applies, open, closes_at, closing_soon, unfollowed "
                        "and mentions_answerable",
                    },
                },
            },
            "Message": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "at": {"type": "number"},
                    "from": {"enum": ["customer", "bot", "agent"]},
                    "agent": {"type": "string"},
                    "kind": {"enum": ["mention", "dm"]},
                    "text": {"type": "string"},
                    "delivery": {
                        "type": "object",
                        "description": "replies only: `queued`, `sent` (with `at`) or "
                        "`not_delivered` (with `reason`, also in a system note); absent once "
                        "the sender's record has expired (30 days)",
                        "properties": {
                            "state": {"enum": ["queued", "sent", "not_delivered"]},
                            "at": {"type": "number"},
                            "reason": {"type": "string"},
                        },
                    },
                },
            },
            "ContextTurn": {
                "type": "object",
                "description": "a turn of the conversation the ticket does not hold: before "
                "it opened (the last 10 within dialog.conversation_idle_s), or exchanged with "
                "the bot while it was resolved (added when it is reopened)",
                "properties": {
                    "at": {"type": "number"},
                    "from": {"enum": ["customer", "bot"]},
                    "kind": {"enum": ["mention", "dm"]},
                    "text": {"type": "string"},
                    "when": {"enum": ["before_ticket", "while_resolved"]},
                },
            },
            "Note": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "at": {"type": "number"},
                    "author": {"type": "string", "description": "agent name, or `system`"},
                    "text": {"type": "string"},
                },
            },
            "TicketDetail": {
                "type": "object",
                "properties": {
                    "ticket": _ref("Ticket"),
                    "conversation": {"type": "array", "items": _ref("Message")},
                    "context": {"type": "array", "items": _ref("ContextTurn")},
                    "notes": {"type": "array", "items": _ref("Note")},
                    "history": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "at": {"type": "number"},
                                "actor": {"type": "string"},
                                "action": {"type": "string"},
                                "from": {
                                    "type": "string",
                                    "description": "priority before (action priority, or "
                                    "sla.breach when the breach raised it)",
                                },
                                "to": {
                                    "type": "string",
                                    "description": "the new priority, or the agent assigned",
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
