"""The command line against a real Redis: dead-letter commands, and one-line errors
(with the right exit code) instead of tracebacks."""

from __future__ import annotations

import json
import socket
import subprocess

import yaml

from tests.support.cli import replydesk_cli
from tests.support.redis_server import env_with_redis, free_port


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return replydesk_cli(*args, env=env_with_redis(url))


async def test_dead_list_and_replay(redis, keys, redis_server):
    await redis.xadd(
        keys.dead,
        {
            "event": '{"x":1}',
            "source": "inbound",
            "stream_id": "1-0",
            "error": "RuntimeError: boom",
            "attempts": "3",
            "failed_at": "1.0",
        },
    )
    out = cli(redis_server.url, "dead", "list")
    assert out.returncode == 0, out.stderr
    [row] = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["error"] == "RuntimeError: boom" and row["attempts"] == 3

    rep = cli(redis_server.url, "dead", "replay", row["id"])
    assert rep.returncode == 0, rep.stderr
    assert await redis.xlen(keys.dead) == 0
    [(_, fields)] = await redis.xrange(keys.inbound)
    assert fields == {b"event": b'{"x":1}'}

    missing = cli(redis_server.url, "dead", "replay", "9-9")
    assert missing.returncode == 1 and "no dead entry 9-9" in missing.stderr


def _one_line_error(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr


def test_bad_arguments_are_usage_errors(redis_server):
    # Each was a traceback from redis-py or the socket layer, exit code 1.
    _one_line_error(cli(redis_server.url, "dead", "list", "--count", "0"), 2, "at least 1")
    _one_line_error(cli(redis_server.url, "dead", "replay", "garbage"), 2, "not an entry id")
    _one_line_error(cli(redis_server.url, "dead", "replay", "1-0\n"), 2, "not an entry id")
    _one_line_error(cli(redis_server.url, "serve", "--port", "99999"), 2, "1 to 65535")
    # "no alerts" with exit 0 although alerts existed.
    _one_line_error(cli(redis_server.url, "alerts", "--limit", "0"), 2, "at least 1")
    _one_line_error(
        cli(redis_server.url, "insights", "--account", "a", "--limit", "-1"), 2, "at least 1"
    )


def test_redis_unreachable_or_misnamed_is_one_line():
    down = f"redis://127.0.0.1:{free_port()}/0"
    _one_line_error(cli(down, "dead", "list"), 1, "cannot reach Redis")
    _one_line_error(cli(down, "agents", "list"), 1, "cannot reach Redis")
    bad = cli("http://user:hunter2@example.invalid/", "agents", "list")
    _one_line_error(bad, 2, "config error: redis.url")
    assert "hunter2" not in bad.stderr


def test_a_config_file_that_is_not_text_is_a_config_error(tmp_path, redis_server):
    path = tmp_path / "replydesk.yml"
    path.write_bytes(b"\xff\xfe\x00binary")
    out = replydesk_cli("config", config=path, env=env_with_redis(redis_server.url))
    _one_line_error(out, 2, "config error", "not UTF-8")


def test_serve_on_a_taken_port_says_so(tmp_path, redis_server):
    path = tmp_path / "replydesk.yml"
    path.write_text(yaml.safe_dump({"dialog": {"pipeline": "pass-through"}}))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        out = replydesk_cli(
            "serve", "--port", port, config=path, env=env_with_redis(redis_server.url)
        )
    _one_line_error(out, 1, f"cannot listen on 127.0.0.1:{port}: Address already in use")
