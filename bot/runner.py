"""Run the aiohttp app until SIGINT or SIGTERM, then shut it down in order.

The shape of aiohttp's ``web.run_app``, with two differences. A signal during startup
still closes what has started: run_app sets its runner up outside its ``try``, so a
signal during startup left Redis and the HTTP session to the garbage collector, which
closed them in no order and logged "asynchronous generator is already running". And
startup work too slow to wait for (loading or training the NLU model, up to a minute)
runs after the listener is up, as tasks in ``app[STARTING]``: /healthz answers
meanwhile, and a failure of one ends the process with its error, as a failed startup
would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from aiohttp import web

# Startup tasks the app runs after the listener is up (bot/app.py); the runner ends the
# process with the error of one that fails.
STARTING = web.AppKey("starting", list[asyncio.Task[None]])


class ListenError(Exception):
    """The listener could not start (port taken, unknown host): a one-line error for the
    command line, not a traceback."""


async def _serve(app: web.Application, host: str, port: int, shutdown_timeout: float) -> None:
    runner = web.AppRunner(
        app, handle_signals=True, access_log=None, shutdown_timeout=shutdown_timeout
    )
    try:
        await runner.setup()  # installs the SIGINT/SIGTERM handlers (GracefulExit)
        try:
            await web.TCPSite(runner, host, port).start()
        except (OSError, OverflowError) as e:  # OverflowError: a port above 65535
            # asyncio wraps bind errors in a long message; the errno says it in a word.
            errno = getattr(e, "errno", None)
            reason = os.strerror(errno) if errno and errno > 0 else str(getattr(e, "strerror", e))
            raise ListenError(f"cannot listen on {host}:{port}: {reason}") from e
        for task in app.get(STARTING, []):
            await asyncio.wait([task])  # (a signal cancels the wait, not the task)
            task.result()  # its error, if it failed
        await asyncio.Event().wait()  # until a signal
    finally:
        # After a cancelled startup this exits the contexts that were entered, newest first.
        await runner.cleanup()


def run_server(app: web.Application, host: str, port: int, shutdown_timeout: float) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, host, port, shutdown_timeout))
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
            asyncio.set_event_loop(None)
            loop.close()
