"""What every benchmark shares: result rows and the table, the infrastructure they run on
(a dedicated Redis database and Postgres schema), processes, RSS sampling and payloads.

Infrastructure, chosen so benchmarks never disturb the test suite running beside them:

- Redis ``$BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/12``), flushed at the start of each
  benchmark;
- Postgres ``$BENCH_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) in a
  schema of its own (``$BENCH_SCHEMA``, default ``bench``), dropped and re-migrated at the start
  of each benchmark.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calendly_brevo.signature import HEADER, sign
from calendly_brevo.simulate import build_event
from tests.e2e import procs
from tests.e2e.procs import Proc as Proc
from tests.e2e.procs import free_port as free_port

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CLI = [PY, "-m", "cli"]
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
PG_BASE = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = os.environ.get("BENCH_SCHEMA", "bench")
SIGNING_KEY = "bench-signing-key-Zq4n1Xk2Jt7Lw0Rv9Hs3Mc6Pd8Fb5Ge1"
BREVO_KEY = "xkeysib-bench-0123456789abcdef"
EVENT_TYPE = "https://api.calendly.com/event_types/BENCH0001"
LIST_ID = 10
ATTRIBUTES = (("CALENDLY_EVENT_TYPE", "text"), ("MEETING_DATE", "date"), ("BOOKING_STATUS", "text"))

CONFIG = f"""
connectors:
  calendly:
    event_mapping:
      bench:
        list_id: {LIST_ID}
        event_type_uri: "{EVENT_TYPE}"
field_mapping:
  email: email
  name: FIRSTNAME
  last_name: LASTNAME
  event_type_name: CALENDLY_EVENT_TYPE
  scheduled_at: MEETING_DATE
  status: BOOKING_STATUS
"""


# --- rows and the table -------------------------------------------------------------------------
@dataclass
class Row:
    """One figure. ``ok`` is None for figures that are reported, not judged."""

    bench: str
    figure: str
    value: str
    baseline: str = "-"
    target: str = "-"
    ok: bool | None = None
    note: str = ""

    @property
    def status(self) -> str:
        return {True: "ok", False: "MISSED", None: ""}[self.ok]


def error_row(bench: str, exc: BaseException) -> Row:
    return Row(bench, "benchmark failed", f"{type(exc).__name__}: {exc}"[:120], ok=False)


def table(rows: Sequence[Row], *, markdown: bool = False) -> str:
    head = ("bench", "figure", "value", "baseline", "target", "status")
    data = [(r.bench, r.figure, r.value, r.baseline, r.target, r.status) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in data]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *data, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt.format(*head), sep, *(fmt.format(*row) for row in data)])


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- infrastructure -----------------------------------------------------------------------------
def database_url() -> str:
    url = PG_BASE.replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{url}?options=-csearch_path%3D{SCHEMA}"


def reset_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()


def reset_postgres(env: dict[str, str]) -> None:
    """Drop and re-create the benchmark schema, then migrate it with the real CLI."""
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
    done = run_cli(["migrate"], env)
    if done.returncode != 0:
        raise RuntimeError(f"migrate failed: {done.stderr[-2000:]}")


def pg_scalar(sql: str) -> Any:
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{SCHEMA}"')
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


def base_env(workdir: Path, *, brevo_url: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for the connector's processes: Redis + Postgres, the benchmark config."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "config.yaml"
    cfg.write_text(extra.pop("CONFIG_TEXT", CONFIG))
    prom = workdir / "prom"
    prom.mkdir(exist_ok=True)
    env = {
        "CONNECTOR_CONFIG": str(cfg),
        "CONNECTOR_DATA_DIR": str(workdir / "data"),
        "CALENDLY_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        "REDIS_URL": REDIS_URL,
        "DATABASE_URL": database_url(),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "warning",
        "METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
    }
    if brevo_url:
        env |= {"BREVO_API_KEY": BREVO_KEY, "BREVO_API_URL": brevo_url}
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> Any:
    return procs.run_cli(args, env, timeout)


def running(argv: list[str], env: dict[str, str], log_path: Path) -> AbstractContextManager[Proc]:
    """``argv`` (a whole command line) as a process, stopped when the block ends."""
    return procs.started(argv, env, log_path, command=[])


def wait_http(url: str, proc: Proc | None = None, timeout: float = 60.0) -> None:
    procs.wait_http(url, proc, timeout)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class RssSampler:
    """Samples VmRSS of some processes every ``interval`` seconds in a thread."""

    pids: dict[str, int]
    interval: float = 0.5
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        t0 = time.monotonic()

        def loop() -> None:
            while not self._stop.is_set():
                for name, pid in self.pids.items():
                    mb = rss_mb(pid)
                    if mb is not None:
                        self.samples.setdefault(name, []).append((time.monotonic() - t0, mb))
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def peak(self, name: str) -> float:
        return max((mb for _, mb in self.samples.get(name, [])), default=0.0)

    def growth(self, name: str, warmup: float = 0.2) -> float:
        """Relative growth from the end of the warm-up (a fraction of the run) to the end,
        comparing the mean of the first and last 10 % of the samples after warm-up."""
        pts = self.samples.get(name, [])
        if len(pts) < 10:
            return 0.0
        span = pts[-1][0]
        steady = [mb for t, mb in pts if t >= span * warmup]
        k = max(1, len(steady) // 10)
        early = sum(steady[:k]) / k
        late = sum(steady[-k:]) / k
        return (late - early) / early if early else 0.0


# --- payloads -----------------------------------------------------------------------------------
def template(event: str = "invitee.created") -> bytes:
    """A Calendly webhook body with ``__ID__`` where the invitee's number goes."""
    doc = build_event(
        event,
        email="bench__ID__@example.com",
        name="Bench Guest__ID__",
        invitee_uri="https://api.calendly.com/scheduled_events/BENCHEV__ID__/invitees/INV__ID__",
        event_type_uri=EVENT_TYPE,
    )
    return json.dumps(doc, separators=(",", ":")).encode()


def body(tmpl: bytes, i: int) -> bytes:
    return tmpl.replace(b"__ID__", str(i).encode())


def signed_headers(raw: bytes, now: int | None = None) -> dict[str, str]:
    return {
        HEADER: sign(SIGNING_KEY, raw, int(time.time()) if now is None else now),
        "Content-Type": "application/json",
    }


def prefill(n: int, *, start: int = 0, source: str = "webhook") -> None:
    """Put ``n`` distinct invitee.created messages on the Redis queue, exactly as the receiver
    would (same message bytes), in batches of 500 commands per round trip."""
    import redis

    from calendly_brevo.queueing import build_message, encode, queue_key

    tmpl = template()
    client = redis.Redis.from_url(REDIS_URL)
    key = queue_key()
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + n):
        message = build_message(body(tmpl, i).decode(), received_at=time.time(), source=source)
        rid = message["options"]["redis_message_id"]
        pipe.hset(f"{key}.msgs", rid, encode(message))
        pipe.rpush(key, rid)
        if (i - start) % 500 == 499:
            pipe.execute()
    pipe.execute()
    client.close()


def queue_outstanding() -> int:
    """Messages not yet acked (queued, fetched-but-unacked, delayed for retry)."""
    import redis

    from calendly_brevo.queueing import queue_key

    client = redis.Redis.from_url(REDIS_URL)
    key = queue_key()
    try:
        return int(client.hlen(f"{key}.msgs")) + int(client.hlen(f"{key}.DQ.msgs"))
    finally:
        client.close()


def fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def result_json(rows: Sequence[Row]) -> str:
    return json.dumps([r.__dict__ for r in rows], indent=1)
