"""Private Redis and Postgres servers that a test may crash and restart at will.

The shared services on 5432/6379 belong to every engineer's test run; a chaos run needs its own,
started on free ports in temporary directories:

- :class:`PrivateRedis`: ``redis-server`` with AOF (``appendfsync always``), so a SIGKILL and a
  restart keep every acknowledged write.
- :class:`PrivatePostgres`: a fresh ``initdb`` cluster run with ``pg_ctl``. ``initdb`` refuses
  to run as root, so when the test runs as root the cluster belongs to ``postgres`` and every
  command goes through ``runuser``.

``available()`` says why one cannot be started here (no binaries), for a clean skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e.procs import free_port


def _wait_port(port: int, timeout: float, up: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not {'up' if up else 'down'} after {timeout}s")


class PrivateRedis:
    def __init__(self, root: Path, *, fsync: str = "always") -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.fsync = fsync
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @staticmethod
    def available() -> str | None:
        return None if shutil.which("redis-server") else "redis-server not installed"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
                "--protected-mode",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait_port(self.port, 15)
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown (no final rewrite, only what AOF already holds)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        _wait_port(self.port, 10, up=False)

    def restart(self, down_seconds: float = 2.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A throw-away cluster. ``url`` uses the ``postgres`` superuser with trust auth."""

    def __init__(self, root: Path) -> None:
        bindir = _pg_bin()
        if bindir is None:
            raise RuntimeError("no initdb under /usr/lib/postgresql")
        self.bin = bindir
        self.as_root = os.geteuid() == 0
        # A directory postgres can own: the test's tmp_path may sit under root-only parents.
        self.base = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.restarts = 0
        if self.as_root:
            shutil.chown(self.base, "postgres", "postgres")
            os.chmod(self.base, 0o700)
        self.log = self.base / "postgres.log"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        conf = self.data / "postgresql.conf"
        with open(conf, "a") as f:
            f.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\nmax_connections = 200\n"
                "shared_buffers = 64MB\n"
            )
        self.started = False

    @staticmethod
    def available() -> str | None:
        if _pg_bin() is None:
            return "no Postgres server binaries under /usr/lib/postgresql"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser"
        return None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> PrivatePostgres:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        _wait_port(self.port, 30)
        self.started = True
        return self

    def restart(self, mode: str = "immediate", down_seconds: float = 2.0) -> None:
        """``immediate`` is a crash: no checkpoint, WAL recovery at start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            except subprocess.CalledProcessError:
                pass
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)
