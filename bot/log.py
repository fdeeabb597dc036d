"""structlog setup: JSON lines when not on a terminal, console rendering on one.

Standard-library logs (aiohttp, redis) go through the same formatter. Bind ids
(event_id, ticket_id, request_id), never message text, at info.
"""

from __future__ import annotations

import logging
import sys
from urllib.parse import urlsplit

import structlog


def loggable_url(url: str) -> str:
    """``url`` for a log line: scheme, host, port and path. The user info and the query
    go, as credentials ride in either (``https://user:pass@host``, ``?token=``)."""
    try:
        p = urlsplit(url)
        host, port = p.hostname or "", p.port
    except ValueError:  # an unparsable URL may hold anything
        return "<unparsable URL>"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{p.scheme}://{host}{f':{port}' if port else ''}{p.path}"


def _exception_formatter() -> structlog.typing.ExceptionRenderer:
    """Tracebacks without local variables: the console renderer's default (rich, or
    better-exceptions) prints every frame's locals, which hold message text, request
    bodies and credentials."""
    try:
        import rich  # noqa: F401 - only whether it is installed
    except ImportError:
        return structlog.dev.plain_traceback
    return structlog.dev.RichTracebackFormatter(show_locals=False)


def setup_logging(level: str = "info", *, json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(exception_formatter=_exception_formatter())
    )
    structlog.configure(
        processors=[
            # First, so a disabled level costs one comparison, not a rendered line.
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if json else []),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would print every webhook path; keep it at warning.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
