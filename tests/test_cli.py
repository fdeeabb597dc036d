"""The command line against a real Redis: dead-letter commands, and one-line errors
(with the right exit code) instead of tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.cli import ROOT, replydesk_cli, serving
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
    assert missing.returncode == 2 and "no dead entry 9-9" in missing.stderr


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


def test_names_that_do_not_fit_the_data_exit_2(redis_server, tmp_path):
    """README: usage, configuration and data errors exit 2 (these exited 1)."""
    url = redis_server.url
    _one_line_error(cli(url, "agents", "add", "bad name!", "--role", "agent"), 2, "invalid agent")
    assert cli(url, "agents", "add", "ann", "--role", "agent").returncode == 0
    _one_line_error(cli(url, "agents", "add", "ann"), 2, "already exists")
    _one_line_error(cli(url, "agents", "revoke", "nobody"), 2, "no agent 'nobody'")
    _one_line_error(cli(url, "insights", "--account", "nosuch"), 2, "no account 'nosuch'")
    _one_line_error(cli(url, "dead", "replay", "9-9"), 2, "no dead entry 9-9")
    # A failure outside the command stays 1 (test_redis_unreachable_or_misnamed_is_one_line).


def _demo_config(tmp_path: Path) -> Path:
    config = tmp_path / "replydesk.yml"
    config.write_text(
        yaml.safe_dump(
            {"dialog": {"pipeline": "pass-through"}, "redis": {"data_dir": str(tmp_path)}}
        )
    )
    return config


def test_commands_beside_a_demo_serve_see_its_accounts(redis_server, tmp_path):
    """`replydesk insights --account acme` beside `serve --demo` said "no account 'acme'"
    (exit 1), and `replydesk config` "0 account(s)", while serve ran two."""
    config, env = _demo_config(tmp_path), env_with_redis(redis_server.url)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return replydesk_cli(*args, config=config, env=env)

    before = run("config")
    assert before.returncode == 0 and "; 0 account(s)" in before.stdout, before.stdout
    with serving(config, "--demo", port=free_port(), env=env):
        out = run("insights", "--account", "acme")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["account"] == "acme"
        assert run("insights", "--account", "acme-cn").returncode == 0
        conf = run("config")
        assert conf.returncode == 0, conf.stderr
        lines = conf.stdout.splitlines()
        assert "2 account(s): 0 configured, 2 demo" in lines[0], conf.stdout
        assert any(ln.startswith("  acme: sandbox ") and ln.endswith("[demo]") for ln in lines)
        assert any(ln.startswith("  acme-cn: sandbox ") and ln.endswith("[demo]") for ln in lines)
        assert f"serve` on {tmp_path.resolve()} ran with --demo" in conf.stdout, conf.stdout
    # Stopped, the data dir is still the demo's: its tickets and insights are there.
    assert run("insights", "--account", "acme").returncode == 0
    # A serve without --demo on the data dir serves no demo accounts: nor do the commands.
    with serving(config, port=free_port(), env=env):
        pass
    gone = run("insights", "--account", "acme")
    _one_line_error(gone, 2, "no account 'acme' (accounts: none")
    assert "0 account(s)" in run("config").stdout


def test_configured_accounts_are_shown_as_such_beside_the_demo(redis_server, tmp_path):
    config = tmp_path / "replydesk.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "redis": {"data_dir": str(tmp_path)},
                "accounts": [
                    {"id": "acme", "platform": "generic", "secrets": {"signing_secret": "s"}}
                ],
            }
        )
    )
    # What `serve --demo` leaves in the data dir (bot.demo.enable_demo).
    (tmp_path / "demo-secrets.json").write_text(
        json.dumps({"signing_secret": "x", "served_with_demo": "yes"})
    )
    out = replydesk_cli("config", config=config, env=env_with_redis(redis_server.url))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "2 account(s): 1 configured, 1 demo" in lines[0], out.stdout
    assert "  acme: generic user_id=- secrets=['signing_secret'] [config]" in lines
    assert any(ln.startswith("  acme-cn: sandbox ") and ln.endswith("[demo]") for ln in lines)


def _embedded_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    config = tmp_path / "replydesk.yml"
    config.write_text(yaml.safe_dump({"redis": {"data_dir": str(tmp_path / "var")}}))
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return config, env


def test_one_shot_commands_print_only_their_own_lines(tmp_path):
    """Each printed embedded_redis_started / _stopped JSON lines around its one line."""
    config, env = _embedded_env(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        out = replydesk_cli(*args, config=config, env=env)
        assert out.returncode == 0, out.stderr
        return out

    added = run("agents", "add", "ann", "--role", "supervisor")
    assert added.stdout.startswith("rdk_") and len(added.stdout.splitlines()) == 1
    assert added.stderr.splitlines() == [
        "agent ann (supervisor) created; the token above is shown only once"
    ]
    assert json.loads(run("agents", "list").stdout)["name"] == "ann"
    assert run("agents", "list").stderr == ""
    assert run("alerts").stderr.splitlines() == ["no alerts"]
    assert run("dead", "list").stderr.splitlines() == ["no dead entries"]
    assert run("agents", "revoke", "ann").stderr.splitlines() == ["agent ann revoked"]
    # At debug they are there.
    debug = run("--log-level", "debug", "dead", "list").stderr
    events = [json.loads(ln)["event"] for ln in debug.splitlines() if ln.startswith("{")]
    assert "embedded_redis_started" in events and "embedded_redis_stopped" in events, debug


def test_serve_still_logs_the_embedded_redis_at_info(tmp_path):
    config, env = _embedded_env(tmp_path)
    config.write_text(
        yaml.safe_dump(
            {"redis": {"data_dir": str(tmp_path / "var")}, "dialog": {"pipeline": "pass-through"}}
        )
    )
    log = tmp_path / "serve.log"
    with serving(config, "--role", "web", port=free_port(), env=env, log=log):
        pass
    lines = log.read_text().splitlines()
    events = [json.loads(ln)["event"] for ln in lines if ln.startswith("{")]
    assert "embedded_redis_started" in events and events[-1] == "embedded_redis_stopped", lines


@pytest.mark.slow
@pytest.mark.timeout(900)  # one real training (about a minute, more on a busy machine)
def test_train_on_a_current_artifact_says_so_in_one_line(tmp_path):
    """It printed a full "train done 9/9" bar and the training report although it had
    trained nothing."""
    data, var = tmp_path / "nlu_data", tmp_path / "var"
    shutil.copytree(ROOT / "nlu_data", data)  # a snapshot: nlu_data/ may change meanwhile
    config = tmp_path / "replydesk.yml"
    # No FAQ tuning: the shortest real training (what is checked is what train prints).
    config.write_text(
        yaml.safe_dump({"redis": {"data_dir": str(var)}, "nlu": {"faq_tuning_epochs": 0}})
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")

    def train(*args: str) -> subprocess.CompletedProcess[str]:
        out = replydesk_cli(
            "train", "--data", str(data), *args, config=config, env=env, timeout=600
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out

    first = " ".join(train().stderr.split())
    assert "train done" in first and "held-out accuracy" in first, first[-2000:]

    again = train()
    assert again.stdout == ""
    assert again.stderr.splitlines() == [
        f"nothing trained: the artifact in {var / 'nlu'} is current (data sha256 "
        f"{again.stderr.split('sha256 ')[1][:12]}); --force retrains, --report shows its report"
    ], again.stderr

    report = " ".join(train("--report").stderr.split())
    assert report.startswith("nothing trained: ") and "held-out accuracy" in report, report
    assert "train done" not in report


def test_a_reader_that_leaves_early_gets_no_traceback(keys, redis_server):
    """`replydesk dead list | head -1`: the pipe closes under the command."""
    import redis as redis_sync

    with redis_sync.Redis.from_url(redis_server.url) as r:
        r.delete(keys.dead)
        for i in range(400):  # more than a pipe's buffer, so the writes themselves fail
            r.xadd(keys.dead, {"event": "{}", "error": f"boom {i} " + "x" * 80})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", "/dev/null", "dead", "list", "--count", "400"],
        cwd=ROOT, env=env_with_redis(redis_server.url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()  # the reader leaves after one line
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_serve_on_a_taken_port_starts_nothing(tmp_path):
    """A worker on a taken port started its sender, SLA scanner and inbound worker
    (reading from the shared streams), and drained them, before it found the port taken;
    the demo's record in the data dir was rewritten too. Now the port is bound first."""
    config, env = _embedded_env(tmp_path)
    config.write_text(
        yaml.safe_dump(
            {"redis": {"data_dir": str(tmp_path / "var")}, "dialog": {"pipeline": "pass-through"}}
        )
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        out = replydesk_cli(
            "serve", "--role", "worker", "--demo", "--port", port, config=config, env=env
        )
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [
        f"replydesk: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert not (tmp_path / "var").exists(), "it started the embedded Redis or the demo"


def test_a_data_file_that_is_not_yaml_is_one_line(tmp_path):
    """The YAML parser's message spanned five lines, quoting the file under a caret."""
    bad = tmp_path / "eval.yml"
    bad.write_text("nlu:\n- intent: greet\n  examples: |\n    - hello there\n  oops: [\n")
    out = replydesk_cli("eval", "--data", str(bad))
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if not ln.startswith("{")]
    assert len(lines) == 1 and lines[0].startswith("replydesk: data error:"), out.stderr
    assert "line 6, column 1" in lines[0] and "^" not in lines[0], lines


def test_train_outside_the_project_folder_says_why_the_data_is_missing(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", "/dev/null", "train"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    [line] = [ln for ln in out.stderr.splitlines() if not ln.startswith("{")]
    assert f"relative to the working directory {tmp_path}" in line, line
    assert "nlu.data_path" in line


def test_serve_options_are_explained_in_help():
    out = replydesk_cli("serve", "--help")
    text = " ".join(out.stdout.split())
    assert "worker: NLU and handlers" in text and "listen port (server.port, 8080)" in text


def test_config_lists_every_missing_secret_at_once(tmp_path):
    """A first install misses several secrets: `config` named one per run."""
    config = tmp_path / "replydesk.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "accounts": [
                    {"id": "brand_x", "platform": "x", "user_id": "1"},
                    {"id": "brand_weibo", "platform": "weibo", "user_id": "2"},
                ]
            }
        )
    )
    env = dict(os.environ, REPLYDESK_SECRET_BRAND_X_ACCESS_TOKEN="hunter2")
    out = replydesk_cli("config", config=config, env=env)
    assert out.returncode == 2, out.stderr
    assert [ln.split(": missing")[0] for ln in out.stderr.splitlines()] == [
        "replydesk: config error: accounts[brand_x].secrets.consumer_secret",
        "replydesk: config error: accounts[brand_weibo].secrets.app_secret",
        "replydesk: config error: accounts[brand_weibo].secrets.access_token",
    ], out.stderr
    assert "$REPLYDESK_SECRET_BRAND_WEIBO_APP_SECRET" in out.stderr
    assert "hunter2" not in out.stderr


def test_config_says_where_serve_listens_and_why(tmp_path):
    env = dict(os.environ, REPLYDESK__SERVER__PORT="9123")
    out = replydesk_cli("config", env=env)
    assert out.returncode == 0, out.stderr
    assert "  serve listens on 127.0.0.1:9123 (from REPLYDESK__SERVER__PORT)" in out.stdout


def test_a_redis_url_with_a_database_the_server_lacks_is_one_line(redis_server):
    # A traceback (redis.exceptions.ResponseError: DB index is out of range).
    url = redis_server.url.rsplit("/", 1)[0] + "/99"
    out = cli(url, "agents", "list")
    _one_line_error(out, 2, "config error: redis.url: no such database", "(from REDIS_URL)")


def test_a_wrong_redis_password_is_a_config_error(tmp_path):
    # It said "cannot reach Redis", exit 1, as if the server were down: it answered, and
    # refused the password.
    import redis as redis_sync

    from tests.support.redis_server import RedisServer

    with RedisServer(str(tmp_path)) as server:
        redis_sync.Redis.from_url(server.url).config_set("requirepass", "right-one")
        for url in (
            server.url.replace("redis://", "redis://:hunter2-wrong@"),
            server.url,  # none given
        ):
            out = cli(url, "agents", "list")
            _one_line_error(out, 2, "config error: redis.url: Redis refused the password")
            assert "hunter2" not in out.stderr


# -- erase-customer --------------------------------------------------------------------


async def _seed_customers(redis, keys, settings):
    """Two customers' messages through the real brain (stub NLU); the second customer
    shares the first one's handle on another account. Returns what the first one said."""
    from bot.brain import Brain
    from escalation.tickets import TicketStore
    from handlers.responses import Responses
    from tests.support.escalation import event
    from tests.support.nlu_values import StubNlu

    responses = Responses.load(ROOT / "nlu_data" / "responses")
    brain = Brain(
        redis, keys, settings, StubNlu(), tickets=TicketStore(redis, keys), responses=responses
    )
    said = ["hello there zebra-quartz", "@acme worst service ever copper-kettle"]
    for text in said:
        kind = "mention" if text.startswith("@") else "dm"
        await brain.handle(event(text, user="cust-7731", handle="erin_q", kind=kind))
    await brain.handle(
        event("hello from acme-2", user="other-1", handle="Erin_Q", account="acme-2")
    )
    return said


async def _db(redis):
    out = {}
    async for k in redis.scan_iter():
        out[k] = await redis.dump(k)
    return out


ERIN = ("--platform", "generic", "--account", "acme", "--user-id", "cust-7731")


async def test_erase_customer_shows_first_and_erases_only_when_confirmed(
    redis, keys, settings, redis_server
):
    said = await _seed_customers(redis, keys, settings)
    before = await _db(redis)

    dry = cli(redis_server.url, "erase-customer", *ERIN, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "stored for generic/acme user cust-7731:" in dry.stdout
    assert "  tickets: 1 (T1 open)" in dry.stdout and "dry run: nothing erased" in dry.stdout
    both = cli(redis_server.url, "erase-customer", *ERIN, "--dry-run", "--yes")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    # No --yes and nobody to ask (stdin is not a terminal): refused, as a usage error.
    unasked = cli(redis_server.url, "erase-customer", *ERIN)
    assert unasked.returncode == 2 and "not erased: confirm with --yes" in unasked.stderr
    assert await _db(redis) == before

    done = cli(redis_server.url, "erase-customer", *ERIN, "--yes", "--reference", "DSR-7")
    assert done.returncode == 0, done.stderr
    assert "erased for generic/acme user cust-7731 (audit record " in done.stdout
    assert "  tickets: 1 (T1 open)" in done.stdout
    for out in (dry, done):  # counts and ids, never what was said
        assert not any(s in out.stdout + out.stderr for s in said)
    assert not await redis.exists(keys.conv("generic", "acme", "cust-7731"))
    assert await redis.exists(keys.conv("generic", "acme-2", "other-1"))
    again = cli(redis_server.url, "erase-customer", *ERIN, "--yes")
    assert (
        again.returncode == 0 and "nothing stored for generic/acme user cust-7731" in again.stdout
    )


async def test_erase_customer_asks_at_a_terminal(redis, keys, settings, redis_server):
    import asyncio
    import pty

    await _seed_customers(redis, keys, settings)
    for answer, code in (("no", 1), ("erase", 0)):
        master, slave = pty.openpty()
        os.write(master, f"{answer}\n".encode())
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot.cli", "--config", "/dev/null", "erase-customer", *ERIN],
            cwd=ROOT, env=env_with_redis(redis_server.url), stdin=slave,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        os.close(slave)
        os.close(master)
        assert out.returncode == code, out.stdout + out.stderr
        assert "type 'erase' to confirm" in out.stdout
        exists = await redis.exists(keys.conv("generic", "acme", "cust-7731"))
        assert exists == (answer == "no")


async def test_erase_customer_by_handle_asks_which_one_when_several_use_it(
    redis, keys, settings, redis_server
):
    await _seed_customers(redis, keys, settings)
    before = await _db(redis)
    out = cli(redis_server.url, "erase-customer", "--handle", "@erin_q", "--yes")
    assert out.returncode == 2 and "belongs to 2 customers" in out.stderr
    assert "--platform generic --account acme --user-id cust-7731" in out.stderr
    assert "--platform generic --account acme-2 --user-id other-1" in out.stderr
    assert await _db(redis) == before
    one = cli(redis_server.url, "erase-customer", "--handle", "erin_q", "--account", "acme-2",
              "--yes")  # fmt: skip
    assert one.returncode == 0 and "erased" in one.stdout, one.stderr
    assert not await redis.exists(keys.conv("generic", "acme-2", "other-1"))
    assert await redis.exists(keys.conv("generic", "acme", "cust-7731"))
    nobody = cli(redis_server.url, "erase-customer", "--handle", "nobody")
    assert nobody.returncode == 0 and "nothing stored for handle nobody" in nobody.stdout
    bad = cli(redis_server.url, "erase-customer", "--user-id", "42")
    assert bad.returncode == 2 and "--user-id needs --platform and --account" in bad.stderr
