"""Run calendly-brevo commands (or any command) as real processes, for end-to-end tests and
the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cli"]

#: ``brevo.rate_margin`` for deployments whose tests count the fake Brevo's 429s. The fake
#: counts a request in the 1 s window of the moment its event loop reads it, in the test's
#: process, on 2 shared cores that also run 2 to 5 connector processes, Postgres and Redis.
#: There a request sent on its slot can be read 40 ms or more after its neighbours (CI
#: once counted one 429 in 60 bookings at 10/s), which the default allowance (0.04 of a 1 s
#: window) does not cover. Such a host is what ``rate_margin`` is for (README, "Brevo's rate
#: limits"); 0.15 allows 150 ms. The bucket's own guarantee, at this margin and the default, is
#: tests/ratelimit/test_bucket.py's property test.
JITTERY_HOST_RATE_MARGIN = 0.15


_GIVEN: set[int] = set()
_GIVEN_LOCK = threading.Lock()


def free_port() -> int:
    """A port nothing listens on now, and never one this process handed out before.

    The kernel may give a just-closed port 0 pick out again, so two picks that are not yet
    bound (a receiver's PORT and another's ADMIN_PORT) could collide: remembering what was
    handed out keeps every pick of a test run distinct."""
    with _GIVEN_LOCK:
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _GIVEN:
                _GIVEN.add(port)
                return port


class Proc:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL.
    ``args`` follow ``command`` (by default the calendly-brevo CLI; ``command=[]`` runs
    ``args`` as a whole command line). Unless ``env`` names an ``ADMIN_PORT``, the process gets a
    free one: every receiver opens an admin listener, and two on the default 8001 would collide."""

    def __init__(
        self,
        args: list[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        command: list[str] = CLI,
    ) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        full = {**os.environ, **env}
        full.setdefault("ADMIN_PORT", str(free_port()))
        self.popen = subprocess.Popen(
            command + args,
            env=full,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, n: int = 3000) -> str:
        return self.log()[-n:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 40.0) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._log.close()
        return int(self.popen.returncode)

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


def run_cli(
    args: list[str], env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        CLI + args,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def wait_http(url: str, proc: Proc | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.args} exited early:\n{proc.log()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout}s" + (f":\n{proc.log()}" if proc else ""))


def wait_for(
    predicate: object, timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@contextmanager
def started(
    args: list[str], env: Mapping[str, str], log_path: Path, *, command: list[str] = CLI
) -> Iterator[Proc]:
    proc = Proc(args, env, log_path, command=command)
    try:
        yield proc
    finally:
        proc.stop()
