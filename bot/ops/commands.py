"""``replydesk insights --account X`` and ``replydesk alerts`` (JSON on stdout)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bot.config import Settings


def add_commands(sub: Any) -> None:
    from bot.cli import positive  # bot.cli imports this module

    i = sub.add_parser("insights", help="an account's hot words, top intents and response times")
    i.add_argument("--account", required=True)
    i.add_argument("--limit", type=positive, default=15)
    i.set_defaults(func=_insights)
    a = sub.add_parser("alerts", help="list crisis alerts (newest first)")
    a.add_argument("--status", choices=["active", "cleared"], default=None)
    a.add_argument("--account", default=None)
    a.add_argument("--limit", type=positive, default=20)
    a.set_defaults(func=_alerts)


def _insights(settings: Settings, args: argparse.Namespace) -> int:
    from bot.cli import EXIT_USAGE, run_with_redis
    from bot.ops.insights import account_insights
    from bot.redis import Keys

    if settings.account(args.account) is None:
        known = ", ".join(a.id for a in settings.accounts) or "none"
        print(
            f"replydesk: no account {args.account!r} (accounts: {known}; see `replydesk config`)",
            file=sys.stderr,
        )
        return EXIT_USAGE

    async def go(redis: Any) -> int:
        body = await account_insights(
            redis,
            Keys(settings.redis.key_prefix),
            settings.ops,
            args.account,
            now=time.time(),
            limit=args.limit,
        )
        print(json.dumps(body, ensure_ascii=False, indent=2))
        return 0

    return run_with_redis(settings, go)


def _alerts(settings: Settings, args: argparse.Namespace) -> int:
    from bot.cli import run_with_redis
    from bot.ops.spikes import list_alerts
    from bot.redis import Keys

    async def go(redis: Any) -> int:
        rows = await list_alerts(
            redis,
            Keys(settings.redis.key_prefix),
            status=args.status,
            account=args.account,
            limit=args.limit,
        )
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
        if not rows:
            print("no alerts", file=sys.stderr)
        return 0

    return run_with_redis(settings, go)
