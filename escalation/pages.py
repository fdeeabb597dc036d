"""What the console and the sandbox pages share: templates, static files, security headers
(and the agent API's: no caching, no sniffing).

Pages are server templates (jinja2, autoescaped) plus plain JavaScript from
``/static``; no inline scripts or styles, so the Content-Security-Policy can forbid
them and a customer's ``<script>`` can never run. Customer text reaches the DOM only
through autoescaped templates or ``textContent``.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"
STATIC_PREFIX = "/static"
PAGE_PREFIXES = ("/console", "/sandbox", STATIC_PREFIX)
# The agent API answers with customers' messages: no cache may keep them, and no
# browser may read a JSON answer as anything else.
API_PREFIX = "/api/"
API_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

_ENV_KEY = web.AppKey("page_templates", jinja2.Environment)
_SETUP_KEY = web.AppKey("pages_setup", bool)
_STATIC_ROUTE = "replydesk_static"


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith(API_PREFIX):
        for name, value in API_HEADERS.items():
            response.headers.setdefault(name, value)  # the event stream keeps its no-cache
        return
    if not request.path.startswith(PAGE_PREFIXES):
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith(STATIC_PREFIX):
        # Pages carry a CSRF token and the agent's name: never cache them.
        response.headers.setdefault("Cache-Control", "no-store")


def setup_pages(app: web.Application) -> None:
    """Templates, ``/static`` and the security headers; safe to call more than once."""
    if app.get(_SETUP_KEY):
        return
    app[_SETUP_KEY] = True
    app[_ENV_KEY] = _env()
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name=_STATIC_ROUTE, append_version=True)
    app.on_response_prepare.append(_security_headers)


def static_url(request: web.Request, filename: str) -> str:
    """A versioned URL (``?v=<hash>``), so a new release is never served from cache."""
    return str(request.app.router[_STATIC_ROUTE].url_for(filename=filename))


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    env = request.app[_ENV_KEY]
    html = env.get_template(template).render(
        static=lambda name: static_url(request, name), **context
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def same_origin(request: web.Request) -> bool:
    """True unless the browser says the request came from another site.

    Checked on cookie-less form posts (login), where there is no session token yet.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    # Host only: behind a TLS-terminating proxy the scheme seen here may differ.
    return urlsplit(origin).netloc == request.host
