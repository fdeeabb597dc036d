"""Who is calling the agent API: a bearer token, or the console's session cookie.

:func:`authenticate` is the one entry point (the API and the console both use it):

* ``Authorization: Bearer <token>`` → the agent whose token hashes to it;
* otherwise the ``replydesk_session`` cookie → a session created by
  :func:`create_session` (the console's login calls it after checking a token).
  Requests authenticated by cookie that change state (POST/PUT/PATCH/DELETE) must also
  send the session's CSRF token in ``X-CSRF-Token``; :func:`authenticate` returns None
  when it is missing or wrong, so a cross-site form can never act as the agent.

Sessions live in Redis (``sessions:{sha256(id)}`` JSON with the agent name, the sha256 of
the token that signed in, and the CSRF token, expiring after ``escalation.session_ttl_s``).
The key is the id's hash, not the id, for the same reason tokens are kept hashed: whoever
reads Redis (a backup, the AOF file, a read-only monitoring user) must not be able to
sign in with what they read.
Every request resolves the session through that token hash, so revoking the token ends
its sessions at once, and they stay dead when the agent is added again with a new token
(the documented rotation) instead of coming back with the new record's role.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

import structlog
from aiohttp import web

from bot import keys as K
from bot.platforms.signing import same
from bot.redis import Keys, Redis
from escalation.agents import Agent, AgentStore, hash_token

log = structlog.get_logger(__name__)

SESSION_COOKIE = "replydesk_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_SESSION_TTL_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    agent: str
    csrf_token: str
    token_sha256: str


def _session_key(keys: Keys, session_id: str) -> str:
    return keys.ns("sessions", hashlib.sha256(session_id.encode()).hexdigest())


async def create_session(
    redis: Redis, keys: Keys, agent: Agent, token: str, *, ttl_s: int = DEFAULT_SESSION_TTL_S
) -> Session:
    """A new console session for ``agent``, who signed in with ``token`` (only its hash is
    kept); set ``session_id`` as the cookie."""
    s = Session(secrets.token_urlsafe(32), agent.name, secrets.token_urlsafe(24), hash_token(token))
    await redis.set(
        _session_key(keys, s.session_id),
        json.dumps({"agent": s.agent, "csrf": s.csrf_token, "token_sha256": s.token_sha256}),
        ex=ttl_s,
    )
    return s


async def get_session(redis: Redis, keys: Keys, session_id: str) -> Session | None:
    if not session_id or len(session_id) > 128:
        return None
    raw = await redis.get(_session_key(keys, session_id))
    if raw is None:
        return None
    d = json.loads(raw)
    if not d.get("token_sha256"):  # made before sessions were bound to a token: sign in again
        return None
    return Session(session_id, d["agent"], d["csrf"], d["token_sha256"])


async def session_agent(redis: Redis, keys: Keys, session_id: str) -> tuple[Session, Agent] | None:
    """The session and its agent, while the token it was made with is still that agent's."""
    session = await get_session(redis, keys, session_id)
    if session is None:
        return None
    agent = await AgentStore(redis, keys).by_token_hash(session.token_sha256)
    if agent is None or agent.name != session.agent:
        return None
    return session, agent


async def delete_session(redis: Redis, keys: Keys, session_id: str) -> None:
    await redis.delete(_session_key(keys, session_id))


def _bearer(request: web.Request) -> str | None:
    h = request.headers.get("Authorization", "")
    scheme, _, token = h.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def authenticate(request: web.Request) -> Agent | None:
    """The calling agent, or None (→ 401). Bearer token first, then the session cookie."""
    redis, keys = request.app[K.REDIS], request.app[K.KEYS]
    token = _bearer(request)
    if token is not None:
        agent = await AgentStore(redis, keys).by_token(token)
        if agent is None:
            # Tokens are 256 random bits, so guessing is hopeless; the log line is for
            # spotting a leaked, revoked token still in use, or someone trying.
            log.warning("api_token_refused", remote=request.remote, path=request.path)
        return agent
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    current = await session_agent(redis, keys, sid)
    if current is None:
        return None
    session, agent = current
    if request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        if not given or not same(given, session.csrf_token):
            return None
    return agent
