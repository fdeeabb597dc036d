"""``replydesk agents add|list|revoke``: agent accounts from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bot.config import Settings
from bot.redis import Keys
from escalation.agents import ROLES, AgentError, AgentStore


def _store(settings: Settings, redis: Any) -> AgentStore:
    return AgentStore(redis, Keys(settings.redis.key_prefix))


def _add(settings: Settings, args: argparse.Namespace) -> int:
    from bot.cli import EXIT_USAGE, run_with_redis

    async def go(redis: Any) -> int:
        try:
            token = await _store(settings, redis).add(args.name, args.role)
        except AgentError as e:
            print(f"replydesk: {e}", file=sys.stderr)
            return EXIT_USAGE  # a bad name, an agent that exists or does not
        print(token)
        print(
            f"agent {args.name} ({args.role}) created; the token above is shown only once",
            file=sys.stderr,
        )
        return 0

    return run_with_redis(settings, go)


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from bot.cli import run_with_redis

    async def go(redis: Any) -> int:
        for a in await _store(settings, redis).all():
            print(json.dumps(a.to_dict()))
        return 0

    return run_with_redis(settings, go)


def _revoke(settings: Settings, args: argparse.Namespace) -> int:
    from bot.cli import EXIT_USAGE, run_with_redis

    async def go(redis: Any) -> int:
        try:
            await _store(settings, redis).revoke(args.name)
        except AgentError as e:
            print(f"replydesk: {e}", file=sys.stderr)
            return EXIT_USAGE  # a bad name, an agent that exists or does not
        print(f"agent {args.name} revoked", file=sys.stderr)
        return 0

    return run_with_redis(settings, go)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("agents", help="manage support agent accounts")
    asub = p.add_subparsers(dest="agents_command", required=True, metavar="ACTION")
    a = asub.add_parser("add", help="create an agent and print its bearer token once")
    a.add_argument("name")
    a.add_argument("--role", choices=list(ROLES), default="agent")
    a.set_defaults(func=_add)
    ls = asub.add_parser("list", help="list agents as JSON lines")
    ls.set_defaults(func=_list)
    r = asub.add_parser("revoke", help="revoke an agent's token")
    r.add_argument("name")
    r.set_defaults(func=_revoke)
