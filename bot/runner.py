"""Run the aiohttp app until SIGINT or SIGTERM, then shut it down in order.

The shape of aiohttp's ``web.run_app``, with two differences. A signal during startup
still closes what has started: run_app sets its runner up outside its ``try``, so a
signal during startup left Redis and the HTTP session to the garbage collector, which
closed them in no order and logged "asynchronous generator is already running". And
startup work too slow to wait for (loading or training the NLU model, up to a minute)
runs after the listener is up, as tasks in ``app[STARTING]``: /healthz answers
meanwhile, and a failure of one ends the process with its error, as a failed startup
would.

The listening socket is bound before any startup work, so a taken port stops the
process before it starts consumers or Redis. SIGINT and SIGTERM are handled here, not
by aiohttp, to log which signal stops the process, and so that a second one during the
drain (a second Ctrl-C) is logged and ignored rather than cutting the drain short: the
drain is bounded by ``shutdown_timeout`` anyway, and SIGKILL still stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

# Startup tasks the app runs after the listener is up (bot/app.py); the runner ends the
# process with the error of one that fails.
STARTING = web.AppKey("starting", list[asyncio.Task[None]])


class ListenError(Exception):
    """The listener could not start (port taken, unknown host): a one-line error for the
    command line, not a traceback."""


def bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` (as asyncio's create_server binds
    them), not yet listening; ListenError with the reason in a word when one cannot."""
    socks: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # "::" must not take IPv4's port as well
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except (OSError, OverflowError) as e:  # OverflowError: a port above 65535
        for sock in socks:
            sock.close()
        errno = getattr(e, "errno", None)
        reason = os.strerror(errno) if errno and errno > 0 else str(getattr(e, "strerror", e))
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from e
    return socks


async def _serve(
    app: web.Application, socks: list[socket.socket], shutdown_timeout: float, role: str
) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    try:
        await runner.setup()  # the app's startup: Redis, consumers...
        for sock in socks:
            await web.SockSite(runner, sock).start()
        host, port = socks[0].getsockname()[:2]
        log.info("listening", host=host, port=port, role=role or None)
        for task in app.get(STARTING, []):
            await asyncio.wait([task])  # (a signal cancels the wait, not the task)
            task.result()  # its error, if it failed
        await asyncio.Event().wait()  # until a signal
    finally:
        # After a cancelled startup this exits the contexts that were entered, newest first.
        await runner.cleanup()


def run_server(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float,
    role: str = "",
    socks: list[socket.socket] | None = None,
) -> None:
    """Serve ``app`` on ``socks`` (from :func:`bind`, which the caller may have called
    before its own preparations), or on sockets bound now to ``host``:``port``."""
    if socks is None:
        socks = bind(host, port)  # before anything starts: a taken port stops us here
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stopping = False

    def on_signal(sig: signal.Signals) -> None:
        nonlocal stopping
        if stopping:
            log.warning("stop_in_progress", signal=sig.name, drain_timeout_s=shutdown_timeout)
            return
        stopping = True
        log.info("stopping", signal=sig.name, drain_timeout_s=shutdown_timeout)
        raise web.GracefulExit()  # out of run_until_complete, as aiohttp's handler does

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    main = loop.create_task(_serve(app, socks, shutdown_timeout, role))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                # The app's own cleanup first, while its background tasks still run (the
                # consumers drain); only then is whatever is left cancelled.
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            for sock in socks:  # closed with the site; not if startup was cut short
                sock.close()
            asyncio.set_event_loop(None)
            loop.close()
