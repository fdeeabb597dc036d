"""``replydesk`` command line: serve, dead-letter tools, and each subsystem's commands.

Subsystems add their own commands through an ``add_commands(subparsers)`` function
(``bot.nlu.commands``, ``escalation.commands``); each command gets the loaded Settings
(with the demo accounts when the last ``serve`` on the data dir ran with ``--demo``).

Exit codes (README, "Command line"): 0 done (nothing to do included); 2 (``EXIT_USAGE``)
when the command as given cannot work: a usage error, a configuration error, a data
error, or a name that does not fit the data (an unknown account, agent or dead entry, an
agent that already exists); 1 (``EXIT_FAILURE``) for a failure of something else: Redis
unreachable, a port taken, an unexpected error; 130 on Ctrl-C (0 for ``serve``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from redis.exceptions import AuthenticationError as RedisAuthError
from redis.exceptions import ResponseError as RedisResponseError

from bot.config import ConfigError, Settings, load_settings
from bot.log import setup_logging
from bot.nlu.data import NluDataError
from bot.storage_down import UNAVAILABLE

# Modules that contribute their own subcommands.
COMMAND_MODULES = ("bot.nlu.commands", "escalation.commands", "bot.ops.commands")

EXIT_FAILURE = 1  # Redis unreachable, a port taken: retrying may work
EXIT_USAGE = 2  # bad arguments, config or data, an unknown name: the command must change


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import build_app  # the composition root, used only here
    from bot.runner import ListenError, bind, run_server

    if args.host:
        settings.server.host = args.host
    if args.port:
        settings.server.port = args.port
    try:
        # First: a taken port must stop serve before it changes anything (the demo's
        # records below, Redis, consumers).
        socks = bind(settings.server.host, settings.server.port)
    except ListenError as e:
        print(f"replydesk: {e}", file=sys.stderr)
        return EXIT_FAILURE
    from bot.demo import enable_demo, forget_demo, install_demo, retire_demo, serve_demo_shop

    if args.demo:
        enable_demo(settings)  # every role: a worker sends to the sandbox accounts
        app = build_app(settings, role=args.role)
        if args.role in ("all", "web"):
            install_demo(app)
        else:  # no sandbox, console or banner; but it looks orders up at its own address
            serve_demo_shop(app)
    else:
        forget_demo(settings)  # the commands beside it see the accounts it serves
        app = build_app(settings, role=args.role)
        retire_demo(app)  # a printed demo token must not outlive the demo
    # Everything imported so far lives for the whole process: move it out of the
    # collector's view, so full collections stay short (they showed as p99 spikes).
    gc.collect()
    gc.freeze()
    run_server(
        app,
        settings.server.host,
        settings.server.port,
        shutdown_timeout=max(5.0, settings.worker.visibility_timeout_s / 2),
        role=args.role,
        socks=socks,
    )
    return 0


def run_with_redis(settings: Settings, fn: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    """Run ``fn(redis)`` against the configured (or embedded) Redis. An embedded server's
    start and stop are logged at debug: a one-shot command prints its own line only."""
    from bot.redis import open_redis

    async def main() -> int:
        async with open_redis(settings.redis, log_level=logging.DEBUG) as redis:
            return await fn(redis)

    return asyncio.run(main())


def _dead_list(settings: Settings, args: argparse.Namespace) -> int:
    from bot.redis import Keys
    from bot.streams import list_dead

    async def go(redis: Any) -> int:
        rows = await list_dead(redis, Keys(settings.redis.key_prefix), count=args.count)
        for dead_id, f in rows:
            print(
                json.dumps(
                    {
                        "id": dead_id,
                        "source": f.get("source"),
                        "stream_id": f.get("stream_id"),
                        "attempts": int(f.get("attempts", "0")),
                        "error": f.get("error"),
                        "failed_at": float(f.get("failed_at", "0")),
                    }
                )
            )
        if not rows:
            print("no dead entries", file=sys.stderr)
        return 0

    return run_with_redis(settings, go)


def _dead_replay(settings: Settings, args: argparse.Namespace) -> int:
    from bot.redis import Keys
    from bot.streams import replay_dead

    async def go(redis: Any) -> int:
        try:
            new_id = await replay_dead(redis, Keys(settings.redis.key_prefix), args.id)
        except KeyError:
            print(f"replydesk: no dead entry {args.id}", file=sys.stderr)
            return EXIT_USAGE
        except ValueError as e:  # nothing to replay in it
            print(f"replydesk: {e}", file=sys.stderr)
            return EXIT_USAGE
        print(f"replayed {args.id} as {new_id}")
        return 0

    return run_with_redis(settings, go)


def _erase_customer(settings: Settings, args: argparse.Namespace) -> int:
    """Show what is stored about one customer, and erase it once confirmed (bot.erasure)."""
    from bot.erasure import Customer, customers_with_handle, erase, find
    from bot.redis import Keys

    keys = Keys(settings.redis.key_prefix)

    async def go(redis: Any) -> int:
        if args.user_id is not None:
            if not (args.platform and args.account):
                print("replydesk: --user-id needs --platform and --account", file=sys.stderr)
                return EXIT_USAGE
            customer = Customer(args.platform, args.account, args.user_id)
        else:
            found = await customers_with_handle(
                redis, keys, args.handle, platform=args.platform or "", account=args.account or ""
            )
            if not found:
                print(f"nothing stored for handle {args.handle}")
                return 0
            if len(found) > 1:
                print(
                    f"replydesk: handle {args.handle} belongs to {len(found)} customers; name"
                    " one with --platform, --account and --user-id:",
                    file=sys.stderr,
                )
                for c in found:
                    print(f"  --platform {c.platform} --account {c.account} --user-id {c.user_id}",
                          file=sys.stderr)  # fmt: skip
                return EXIT_USAGE
            customer = found[0]
        who = f"{customer.platform}/{customer.account} user {customer.user_id}"
        if not args.yes:  # show first what a confirmation would erase
            plan = await find(redis, keys, customer)
            if plan.empty:
                print(f"nothing stored for {who}")
                return 0
            print(f"stored for {who}:")
            _print_counts(plan.counts(), plan.tickets)
            if args.dry_run:
                print("dry run: nothing erased")
                return 0
            if not sys.stdin.isatty():
                print("replydesk: not erased: confirm with --yes", file=sys.stderr)
                return EXIT_USAGE
            try:
                answer = await asyncio.to_thread(
                    input, "erase all of it? type 'erase' to confirm: "
                )
            except EOFError:  # Ctrl-D
                answer = ""
            if answer.strip() != "erase":
                print("not erased")
                return EXIT_FAILURE
        done, audit_id = await erase(redis, keys, settings, customer, reference=args.reference)
        if audit_id is None:
            print(f"nothing stored for {who}")
            return 0
        print(f"erased for {who} (audit record {audit_id}):")
        _print_counts(done.counts(), done.tickets)
        if done.in_flight_events or done.in_flight_replies:
            print(
                "some of the customer's messages or replies were being handled: run the"
                " command again in a minute for anything they stored since"
            )
        return 0

    return run_with_redis(settings, go)


def _print_counts(counts: dict[str, int], tickets: dict[str, str]) -> None:
    for kind, n in counts.items():
        extra = ""
        if kind == "tickets":
            extra = " (" + ", ".join(f"{t} {st}" for t, st in tickets.items()) + ")"
        print(f"  {kind}: {n}{extra}")


def _config_check(settings: Settings, args: argparse.Namespace) -> int:
    """The accounts this command line sees, and where each comes from, once the config
    passes what ``serve`` checks at start."""
    from bot.app import check_config
    from bot.demo import state_path
    from bot.platforms import ADAPTERS, adapter_for

    # Every missing secret at once (a first install misses several; serve stops at the
    # first), then everything else serve checks at start.
    problems: list[str] = []
    for account in settings.accounts:
        missing = []
        for name in getattr(ADAPTERS[account.platform], "required_secrets", ()):
            try:
                account.secret(name)
            except ConfigError as e:
                missing.append(str(e))
        if not missing:  # the adapter's other checks (api_base...)
            try:
                adapter_for(account)
            except ConfigError as e:
                missing.append(str(e))
        problems += missing
    if problems:
        for problem in problems:
            _config_error(settings, problem)
        return EXIT_USAGE
    check_config(settings)
    demo = set(settings.demo_accounts)
    n, d = len(settings.accounts), len(demo)
    print(f"config OK ({settings.source}); {n} account(s): {n - d} configured, {d} demo")
    set_by = "; ".join(
        settings.origins[key] for key in ("server.host", "server.port") if key in settings.origins
    )
    redis = (
        f"embedded, data in {Path(settings.redis.data_dir).resolve()}"
        if settings.redis.url is None
        else f"redis.url ({settings.origins.get('redis.url', 'from the defaults')})"
    )
    listen = f"{settings.server.host}:{settings.server.port}"
    print(f"  serve listens on {listen}{f' ({set_by})' if set_by else ''}; Redis: {redis}")
    for a in settings.accounts:
        print(
            f"  {a.id}: {a.platform} user_id={a.user_id or '-'} secrets={sorted(a.secrets)}"
            f" [{'demo' if a.id in demo else 'config'}]"
        )
    if demo:
        print(
            f"demo accounts: the last `replydesk serve` on {Path(settings.redis.data_dir).resolve()}"
            f" ran with --demo ({state_path(settings).resolve()}); a serve without --demo"
            " there drops them"
        )
    return 0


def positive(value: str) -> int:
    """An argparse type: a whole number of at least 1 (a usage error otherwise)."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return n


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {value!r}")
    return int(value)


def _entry_id(value: str) -> str:
    # The full id, as `dead list` prints it: Redis would take "123" as 123-0 for the delete
    # but match any 123-N when reading, and answer an error to anything else.
    m = re.fullmatch(r"(\d{1,20})-(\d{1,20})", value)
    if m is None or max(int(m[1]), int(m[2])) >= 2**64:
        raise argparse.ArgumentTypeError(f"not an entry id like 1712345678901-0: {value!r}")
    return value


def _config_error(settings: Settings, message: str) -> int:
    """A problem found after loading, on stderr with where its key was set."""
    print(f"replydesk: config error: {settings.locate(message)}", file=sys.stderr)
    return EXIT_USAGE


def _one_line(text: str) -> str:
    """A YAML parser's message on one line: its problem and position, without the lines
    it quotes from the file (indented, with a ^ under the column; they may hold a
    customer's message)."""
    kept = [line.strip() for line in text.splitlines() if not line.startswith("    ")]
    return " ".join(k for k in kept if k).replace('in "<unicode string>", ', "at ").rstrip(":")


def _data_hint(settings: Settings, message: str) -> str:
    """Why the training data may be missing: a relative folder, outside the project."""
    folder = Path(settings.nlu.data_path or "nlu_data")
    if folder.is_absolute() or folder.is_dir() or not message.startswith(str(folder)):
        return ""
    return (
        f" (the folder {str(folder)!r} is relative to the working directory {os.getcwd()};"
        " run from the project folder or set nlu.data_path)"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="replydesk",
        description="replydesk command line: the service, dead letters, NLU, agents and ops.",
    )
    p.add_argument("--config", help="YAML config file (default: ./replydesk.yml if present)")
    p.add_argument("--log-level", default=None, help="debug, info, warning, error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the service")
    s.add_argument(
        "--role",
        choices=["all", "web", "worker", "sender"],  # bot.app.ROLES (tests/test_roles.py checks)
        default="all",
        help="all (default): everything in one process; web: webhooks, agent API, console;"
        " worker: NLU and handlers, sender, SLA timers, crisis alerts;"
        " sender: the outbox sender only (no NLU model)",
    )
    s.add_argument("--host", default=None, help="listen address (server.host, 127.0.0.1)")
    s.add_argument("--port", type=_port, default=None, help="listen port (server.port, 8080)")
    s.add_argument(
        "--demo",
        action="store_true",
        help="turn on the customer sandbox with demo accounts and print a demo agent token",
    )
    s.set_defaults(func=_serve)

    d = sub.add_parser("dead", help="inspect and replay dead-lettered events and replies")
    dsub = d.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("list", help="list dead entries as JSON lines")
    dl.add_argument("--count", type=positive, default=100, help="at most this many (100)")
    dl.set_defaults(func=_dead_list)
    dr = dsub.add_parser("replay", help="put a dead entry back on its stream")
    dr.add_argument("id", type=_entry_id, help="an id from `replydesk dead list`")
    dr.set_defaults(func=_dead_replay)

    e = sub.add_parser(
        "erase-customer",
        help="erase everything stored about one customer (right to erasure)",
        description="Show what is stored about one customer (counts, no message text),"
        " then erase it: with --yes, or after typing 'erase' at the prompt. Name the"
        " customer by --platform, --account and --user-id, or by --handle.",
    )
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument("--user-id", help="the customer's user id on the platform")
    who.add_argument("--handle", help="the customer's handle, with or without @")
    e.add_argument("--platform", help="x, weibo, mastodon, generic or sandbox")
    e.add_argument("--account", help="the brand account id (as in the config)")
    how = e.add_mutually_exclusive_group()
    how.add_argument("--dry-run", action="store_true", help="only show what would be erased")
    how.add_argument("--yes", action="store_true", help="erase without showing or asking")
    e.add_argument(
        "--reference",
        default="",
        help="the request's reference in your own records, kept in the audit record"
        " (not the customer's name or handle)",
    )
    e.set_defaults(func=_erase_customer)

    c = sub.add_parser("config", help="check the configuration and print a summary")
    c.set_defaults(func=_config_check)

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # --log-level is validated with the rest (a bad one is a config error, not a crash).
        level = {"log_level": args.log_level} if args.log_level else None
        settings = load_settings(args.config, overrides=level)
    except ConfigError as e:
        print(f"replydesk: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings.log_level)
    try:
        if args.func is not _serve:
            from bot.demo import demo_for_commands

            # Beside a `serve --demo` (same config, same data dir): its demo accounts too.
            demo_for_commands(settings)
        return int(args.func(settings, args) or 0)
    except ConfigError as e:
        # Found after loading (a platform adapter, the SLA policies): with where it was set.
        return _config_error(settings, str(e))
    except NluDataError as e:
        print(
            f"replydesk: data error: {_one_line(str(e))}{_data_hint(settings, str(e))}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except RedisAuthError:
        # Reached, but the password is wrong or missing: the config's to fix, not a
        # server to wait for (and never quote the URL: it holds the password).
        return _config_error(
            settings,
            "redis.url: Redis refused the password (authentication failed; check the "
            "password in the URL, or that the server asks for none)",
        )
    except UNAVAILABLE as e:
        # The client has already retried for a few seconds: Redis is down or the URL wrong.
        # (redis-py's message names the host or socket, never the password.)
        print(f"replydesk: cannot reach Redis (REDIS_URL or redis.url): {e}", file=sys.stderr)
        return EXIT_FAILURE
    except RedisResponseError as e:
        if "DB index" not in str(e):
            raise
        # SELECT on connecting: the URL's database number is past the server's databases.
        return _config_error(settings, f"redis.url: no such database on that Redis ({e})")
    except BrokenPipeError:
        # The reader left (`replydesk dead list | head`): stop without a traceback. Python
        # would hit the closed pipe again flushing stdout at exit, so stdout goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except KeyboardInterrupt:
        # Ctrl-C on a command (train, eval, ...): each cleans up in its own finally
        # blocks (train removes its unfinished folder); a traceback would add nothing.
        print("replydesk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
