"""Agent accounts: named people with a role and a bearer token stored only as its sha256.

Layout (all under ``keys.ns``): ``agents`` hash name → JSON record; ``agent_tokens`` hash
sha256(token) → name. Revoking deletes the token hash, so a revoked token never
authenticates again (nor do console sessions made with it: they are bound to the hash),
and marks the record revoked for the listing.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Literal

from bot.redis import Keys, Redis, as_str

Role = Literal["agent", "supervisor"]
ROLES: tuple[Role, ...] = ("agent", "supervisor")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # fullmatch: "$" admits a final \n
TOKEN_PREFIX = "rdk_"


@dataclass(frozen=True, slots=True)
class Agent:
    name: str
    role: Role
    created_at: float = 0.0
    revoked: bool = False

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class AgentError(Exception):
    """A bad name, role, duplicate or unknown agent; the message is for the CLI."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AgentStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self._agents = keys.ns("agents")
        self._tokens = keys.ns("agent_tokens")

    async def add(self, name: str, role: str) -> str:
        """Create ``name`` and return its token (shown once; only its hash is kept)."""
        if not NAME_RE.fullmatch(name):
            raise AgentError(f"invalid agent name {name!r} (letters, digits, . _ -; max 64)")
        if role not in ROLES:
            raise AgentError(f"invalid role {role!r} (agent or supervisor)")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = hash_token(token)
        record = {
            "name": name,
            "role": role,
            "created_at": time.time(),
            "revoked": False,
            "token_sha256": digest,
        }
        existing = await self.redis.hget(self._agents, name)
        if existing is not None and not json.loads(existing).get("revoked"):
            raise AgentError(f"agent {name!r} already exists (revoke it first)")
        tx = self.redis.pipeline(transaction=True)
        tx.hset(self._agents, name, json.dumps(record))
        tx.hset(self._tokens, digest, name)
        await tx.execute()
        return token

    async def get(self, name: str) -> Agent | None:
        raw = await self.redis.hget(self._agents, name)
        if raw is None:
            return None
        d = json.loads(raw)
        return Agent(d["name"], d["role"], d.get("created_at", 0.0), bool(d.get("revoked")))

    async def by_token(self, token: str) -> Agent | None:
        if not token or len(token) > 256:
            return None
        return await self.by_token_hash(hash_token(token))

    async def by_token_hash(self, digest: str) -> Agent | None:
        """The active agent whose current token hashes to ``digest``."""
        name = await self.redis.hget(self._tokens, digest)
        if name is None:
            return None
        agent = await self.get(as_str(name))
        return agent if agent is not None and not agent.revoked else None

    async def all(self) -> list[Agent]:
        raw = await self.redis.hgetall(self._agents)
        out = []
        for v in raw.values():
            d = json.loads(v)
            out.append(
                Agent(d["name"], d["role"], d.get("created_at", 0.0), bool(d.get("revoked")))
            )
        return sorted(out, key=lambda a: a.name)

    async def revoke(self, name: str) -> None:
        raw = await self.redis.hget(self._agents, name)
        if raw is None:
            raise AgentError(f"no agent {name!r}")
        d = json.loads(raw)
        d["revoked"] = True
        tx = self.redis.pipeline(transaction=True)
        tx.hset(self._agents, name, json.dumps(d))
        if d.get("token_sha256"):
            tx.hdel(self._tokens, d["token_sha256"])
        await tx.execute()
