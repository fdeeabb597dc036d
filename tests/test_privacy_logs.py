"""Message text and secrets stay out of logs, dead-letter errors and error messages.

Project rule: secrets are never logged; message text is personal data, so logs carry
ids, not text. Each test puts a recognisable text or secret where a leak would show it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator

import aiohttp
import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from bot.config import ConfigError, RedisConfig, Secret, load_settings
from bot.log import loggable_url, setup_logging
from bot.nlu.rasa import RasaClient, RasaError
from bot.platforms.common import error_text
from bot.redis import open_redis
from tests.conftest import make_settings
from tests.fakes import FakeX
from tests.fakes.harness import X_TOKEN, FakeClock, accounts, dead_entries, deliver, make_sender
from tests.fakes.harness import reply as make_reply
from tests.support.cli import replydesk_cli
from tests.support.redis_server import env_with_redis, free_port

TEXT = "my card 4111-1111 was charged twice"
SECRET = "s3cr3t-Value-42"


@pytest.fixture
def real_logging() -> Iterator[None]:
    """bot.log's setup for one test; the previous configuration afterwards. Only fresh
    loggers are used under it: a module's logger would stay cached to this setup."""
    saved = structlog.get_config()
    root, access = logging.getLogger(), logging.getLogger("aiohttp.access")
    handlers, level, access_level = root.handlers[:], root.level, access.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    access.setLevel(access_level)


def _crash(text: str) -> None:
    token = SECRET  # noqa: F841 - a local a traceback could show
    raise RuntimeError("handler failed")


@pytest.mark.parametrize("json_mode", [False, True])
def test_tracebacks_show_no_local_variables(real_logging, capsys, json_mode) -> None:
    # The console renderer's default (rich) printed every frame's locals: the message
    # text and any credential in scope.
    setup_logging("info", json=json_mode)
    log = structlog.get_logger("test_privacy_logs")
    try:
        _crash(TEXT)
    except RuntimeError:
        log.exception("event_crashed", event_id="e1")
        # How aiohttp reports a handler that raised: a standard-library record.
        logging.getLogger("aiohttp.server").exception("Error handling request")
    err = capsys.readouterr().err
    assert "event_crashed" in err and "Error handling request" in err
    assert err.count("handler failed") >= 2  # both tracebacks are there
    assert TEXT not in err and SECRET not in err


# -- platform error texts: they end in the dead stream, which `dead list` prints ---------


def test_error_text_keeps_the_platform_message_not_echoes() -> None:
    x_invalid = {
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "errors": [{"parameters": {"text": [TEXT]}}, {"message": "text is too long"}],
    }
    got = error_text(json.dumps(x_invalid))
    assert "title=Invalid Request" in got and "text is too long" in got
    assert TEXT not in got
    for body in (f"<html><pre>status={TEXT}</pre></html>", json.dumps([TEXT]), json.dumps(TEXT)):
        assert TEXT not in error_text(body)
    assert "error=bad token" in error_text('{"error": "bad token", "request": "/x"}')


@pytest.fixture
async def x_env(aiohttp_server, redis_server, redis, keys, tmp_path):  # type: ignore[no-untyped-def]
    x = FakeX(token=X_TOKEN)
    server = await aiohttp_server(x.app)
    settings = make_settings(
        redis_server.url, tmp_path, accounts=accounts(str(server.make_url("")).rstrip("/"))
    )
    async with aiohttp.ClientSession() as http:
        yield x, make_sender(settings, redis, keys, http, FakeClock())


async def test_x_error_echoing_the_reply_is_not_dead_lettered(x_env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    x, sender = x_env
    x.fail_next(400, {"title": "Invalid Request", "errors": [{"parameters": {"text": [TEXT]}}]})
    x.fail_next(400, f"<html>Request rejected: {TEXT}</html>")
    for n in ("e1", "e2"):
        await deliver(sender, make_reply("x", "brandx", "mention", event=n, text=TEXT))
    first, second = await dead_entries(redis, keys)
    assert first["error"] == "HTTP 400: title=Invalid Request"
    assert second["error"].startswith("HTTP 400: no error message")
    assert TEXT not in first["error"] and TEXT not in second["error"]


async def test_generic_receiver_echo_is_not_dead_lettered(
    aiohttp_server, redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    async def echo(request: web.Request) -> web.Response:
        return web.Response(status=422, text=await request.text())

    app = web.Application()
    app.router.add_post("/replies", echo)
    server = await aiohttp_server(app)
    account = {
        "id": "acme",
        "platform": "generic",
        "api_base": str(server.make_url("")).rstrip("/"),
        "secrets": {"signing_secret": SECRET},
    }
    settings = make_settings(redis_server.url, tmp_path, accounts=[account])
    async with aiohttp.ClientSession() as http:
        sender = make_sender(settings, redis, keys, http, FakeClock())
        await deliver(sender, make_reply("generic", "acme", "dm", text=TEXT))
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("HTTP 422") and TEXT not in dead["error"]


# -- URLs with credentials -----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        # An unescaped '/', '#' or '?' ends the host part early: urllib then takes what
        # follows the ':' (the password) for the port, and quotes it in its error.
        "redis://:{s}/x@redis:6379/0",
        "redis://:{s}#x@redis:6379/0",
        "redis://:{s}?x@redis:6379/0",
        "redis://:{s}\uff03x@redis:6379/0",  # a fullwidth '#' fails NFKC: urllib quotes it all
    ],
)
async def test_bad_redis_url_error_does_not_quote_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as e:
        async with open_redis(RedisConfig(url=Secret(url.format(s=SECRET)))):
            pass
    assert str(e.value).startswith("redis.url (REDIS_URL): not a valid URL")
    assert SECRET not in str(e.value)


async def test_redis_url_scheme_error_still_says_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="schemes"):
        async with open_redis(RedisConfig(url=Secret(f"http://:{SECRET}@h/"))):
            pass


def test_loggable_url_drops_user_info_and_query() -> None:
    assert loggable_url(f"http://rasa:{SECRET}@rasa.local:5005/model/parse?token={SECRET}") == (
        "http://rasa.local:5005/model/parse"
    )
    assert loggable_url("http://[::1]:5005/model/parse") == "http://[::1]:5005/model/parse"
    assert SECRET not in loggable_url(f"http://a:{SECRET}@h:99999/")


async def test_rasa_outage_log_has_no_credentials() -> None:
    port = free_port()  # nothing listens: connection refused
    client = RasaClient(f"http://rasa:{SECRET}@127.0.0.1:{port}", timeout_s=2.0)
    try:
        with capture_logs() as logs, pytest.raises(RasaError):
            await client.parse(TEXT)
    finally:
        await client.close()
    (down,) = [e for e in logs if e["event"] == "nlu.rasa.down"]
    assert down["url"] == f"http://127.0.0.1:{port}/model/parse"
    assert SECRET not in repr(logs) and TEXT not in repr(logs)


# -- Secret and the config summary -----------------------------------------------------


def test_secret_never_shows_in_repr_str_format_or_dumps() -> None:
    s = load_settings(
        env={"REDIS_URL": f"redis://:{SECRET}@redis:6379/0", "REPLYDESK_SECRET_TOKEN": SECRET},
        overrides={"accounts": [{"id": "a", "platform": "generic", "secrets": {"k": SECRET}}]},
        config_file="/dev/null",
    )
    secret = s.secrets["token"]
    assert secret.get() == SECRET
    shown = [
        repr(s),
        str(s),
        f"{secret}",
        f"{secret!r}",
        format(secret, ""),
        "%s %r" % (secret, secret),  # noqa: UP031 - the old-style path too
        repr(dataclasses.asdict(s)),
        json.dumps(dataclasses.asdict(s), default=str),
    ]
    for text in shown:
        assert SECRET not in text
    with pytest.raises(TypeError) as e:  # not serialisable: no value in the message
        json.dumps({"token": secret})
    assert SECRET not in str(e.value)


def test_secret_of_the_wrong_type_is_not_quoted() -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(env={}, overrides={"secrets": {"token": [SECRET]}}, config_file="/dev/null")
    assert "secrets.token" in str(e.value) and SECRET not in str(e.value)


def test_config_check_prints_secret_names_only(tmp_path) -> None:
    path = tmp_path / "replydesk.yml"
    path.write_text(
        json.dumps(
            {
                "accounts": [
                    {
                        "id": "acme",
                        "platform": "generic",
                        "secrets": {"k": SECRET, "signing_secret": SECRET},
                    }
                ],
                "secrets": {"order_lookup_token": SECRET},
            }
        )
    )
    out = replydesk_cli(
        "config", config=path, env=env_with_redis(f"redis://:{SECRET}@127.0.0.1:1/0")
    )
    assert out.returncode == 0, out.stderr
    assert "secrets=['k', 'signing_secret']" in out.stdout
    assert SECRET not in out.stdout + out.stderr
