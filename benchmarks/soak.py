"""Soak: a steady webhook rate for minutes through a real receiver and workers.

    python -m benchmarks.soak --seconds 600 --rate 200

One ``calendly-brevo receiver`` and one ``calendly-brevo worker --processes 2`` supervisor run on
a private Redis (AOF, ``appendfsync everysec``) and a private Postgres cluster (so the shared
test services are not disturbed), against the zero-latency Brevo stand-in
(``benchmarks.brevo_stub``) with the connector's token bucket raised far above the offered load.
``benchmarks.loadgen`` offers ``--rate`` distinct signed ``invitee.created`` webhooks per second
(open loop) for ``--seconds``.

Every 10 s it samples RSS (``/proc``) of the receiver, the supervisor and each worker child, the
Redis backlog and the number of applied events. At the end it waits for the backlog to drain and
prints: accepted, applied, lost (accepted distinct events not applied), throughput, backlog and
end-to-end lag (``applied_at - received_at``) percentiles, RSS growth per process, and a
verdict: zero lost; memory flat (no process grew more than ``FLAT_MB`` after the first minute);
lag bounded (p99 at most ``LAG_BOUND_SECONDS``, and the backlog in the last quarter of the load
no larger than in the second quarter plus one second of load).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import redis

from benchmarks.common import (
    CONFIG,
    PY,
    ROOT,
    base_env,
    children,
    free_port,
    log,
    rss_mb,
    run_cli,
    running,
    wait_http,
)
from tests.chaos.infra import PrivatePostgres, PrivateRedis

SOAK_CONFIG = (
    CONFIG
    + """
brevo:
  rate_limits:
    contacts: {rate: 5000, burst: 500}
    events: {rate: 5000, burst: 500}
    other: {rate: 10, burst: 50}
worker:
  min_backoff_seconds: 0.2
  max_backoff_seconds: 5
"""
)


#: A process whose RSS grew more than this after the first minute is not flat.
FLAT_MB = 15.0
#: p99 end-to-end lag (receipt to applied) that still counts as keeping up.
LAG_BOUND_SECONDS = 5.0


def verdict(result: dict[str, Any]) -> dict[str, bool]:
    """Zero lost, memory flat, lag bounded (see the module docstring)."""
    rate, seconds = float(result["rate"]), float(result["seconds"])
    load = [s for s in result["samples"] if 0 < s["t"] <= seconds]
    quarter = max(1, len(load) // 4)
    second_q = load[quarter : 2 * quarter] or load
    last_q = load[-quarter:] or load
    backlog_stable = max(s["backlog"] for s in last_q) <= (
        max(s["backlog"] for s in second_q) + rate
    )
    flat = all(
        v["last_mb"] - v["first_mb"] <= FLAT_MB for v in result["rss"].values() if v["first_mb"]
    )
    return {
        "zero_lost": result["lost"] == 0,
        "memory_flat": flat,
        "lag_bounded": result["lag_seconds"]["p99"] <= LAG_BOUND_SECONDS and backlog_stable,
    }


def _applied(pg_url: str) -> int:
    with psycopg.connect(pg_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM processed_events WHERE status = 'applied'")
        return int(row.fetchone()[0])  # type: ignore[index]


def _backlog(client: redis.Redis) -> int:
    return int(client.hlen("dramatiq:calendly.msgs")) + int(
        client.hlen("dramatiq:calendly.DQ.msgs")
    )


def _worker_children(supervisor_pid: int) -> list[int]:
    """The spawned worker processes (not multiprocessing's resource tracker)."""
    found = []
    for pid in sorted(children(supervisor_pid)):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def _warm_up(port: int, pg_url: str, supervisor_pid: int, timeout: float = 120.0) -> None:
    """One webhook end to end, so the load starts when both workers consume."""
    import httpx

    from benchmarks.common import body, signed_headers, template

    raw = body(template(), 10**9)
    r = httpx.post(
        f"http://127.0.0.1:{port}/webhooks/calendly", content=raw, headers=signed_headers(raw)
    )
    r.raise_for_status()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _applied(pg_url) >= 1 and len(_worker_children(supervisor_pid)) >= 2:
            time.sleep(2.0)  # the second child finishes booting
            return
        time.sleep(0.5)
    raise RuntimeError("the warm-up event was not applied")


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def soak(seconds: float, rate: float, workdir: Path, threads: int) -> dict[str, Any]:
    rds = PrivateRedis(workdir, fsync="everysec").start()
    pg = PrivatePostgres(workdir).start()
    stub_port, port = free_port(), free_port()
    try:
        env = base_env(
            workdir,
            brevo_url=f"http://127.0.0.1:{stub_port}/v3",
            CONFIG_TEXT=SOAK_CONFIG,
            REDIS_URL=rds.url,
            DATABASE_URL=pg.url,
            PORT=str(port),
        )
        done = run_cli(["migrate"], env)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        stub_cmd = [PY, "-m", "benchmarks.brevo_stub", "--port", str(stub_port)]
        receiver_cmd = [PY, "-m", "cli", "receiver"]
        worker_cmd = [PY, "-m", "cli", "worker", "--processes", "2"]
        worker_cmd += ["--threads", str(threads)]
        with (
            running(stub_cmd, env, workdir / "stub.log") as stub,
            running(receiver_cmd, env, workdir / "receiver.log") as receiver,
            running(worker_cmd, env, workdir / "worker.log") as worker,
        ):
            wait_http(f"http://127.0.0.1:{stub_port}/__stub__/counts", stub)
            wait_http(f"http://127.0.0.1:{port}/readyz", receiver)
            wait_http(f"http://127.0.0.1:{env['METRICS_PORT']}/healthz", worker)
            return _drive(seconds, rate, env, port, receiver.pid, worker.pid, rds, pg, workdir)
    finally:
        rds.stop()
        pg.stop()


def _drive(
    seconds: float,
    rate: float,
    env: dict[str, str],
    port: int,
    receiver_pid: int,
    supervisor_pid: int,
    rds: PrivateRedis,
    pg: PrivatePostgres,
    workdir: Path,
) -> dict[str, Any]:
    _warm_up(port, pg.url, supervisor_pid)
    total = int(seconds * rate)
    url = f"http://127.0.0.1:{port}/webhooks/calendly"
    load = subprocess.Popen(
        [
            *(PY, "-m", "benchmarks.loadgen", "--url", url, "--mode", "rate"),
            *("--rate", str(rate), "--conns", "64", "--warmup", "0"),
            *("--duration", str(seconds), "--pool", str(total + 1000)),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=open(workdir / "loadgen.log", "ab"),  # noqa: SIM115 - closed with the process
        text=True,
    )
    client = redis.Redis.from_url(rds.url)
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        pids = {"receiver": receiver_pid, "supervisor": supervisor_pid}
        for i, pid in enumerate(_worker_children(supervisor_pid)):
            pids[f"worker{i}"] = pid
        row: dict[str, Any] = {"t": round(time.monotonic() - t0, 1)}
        row |= {name: round(rss_mb(pid) or 0.0, 1) for name, pid in pids.items()}
        row["backlog"] = _backlog(client)
        row["applied"] = _applied(pg.url)
        samples.append(row)
        log(json.dumps(row))

    def sampler() -> None:
        while not stop.wait(10.0):
            sample()

    sample()
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    out, _ = load.communicate(timeout=seconds + 600)
    stop.set()
    thread.join(15)
    offered = json.loads(out.strip().splitlines()[-1])
    accepted = int(offered["statuses"].get("202", 0))
    drain_started = time.monotonic()
    while time.monotonic() - drain_started < 600:
        if _backlog(client) == 0 and _applied(pg.url) >= accepted + 1:
            break
        time.sleep(1.0)
    drain_seconds = time.monotonic() - drain_started
    sample()
    with psycopg.connect(pg.url) as conn:
        lags = [
            float(r[0])
            for r in conn.execute(
                "SELECT EXTRACT(EPOCH FROM applied_at - received_at) FROM processed_events"
                " WHERE status = 'applied'"
            ).fetchall()
        ]
        dead = int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])  # type: ignore[index]
    applied = _applied(pg.url) - 1  # the warm-up event
    client.close()
    steady = [s for s in samples if s["t"] >= min(60.0, seconds / 3)] or samples
    growth = {}
    for name in samples[0]:
        if name in ("t", "backlog", "applied"):
            continue
        first = next((s[name] for s in steady if s.get(name)), 0.0)
        last = samples[-1].get(name, 0.0)
        growth[name] = {
            "first_mb": first,
            "last_mb": last,
            "peak_mb": max(s.get(name, 0.0) for s in samples),
        }
    return {
        "seconds": seconds,
        "rate": rate,
        "offered": offered,
        "accepted": accepted,
        "applied": applied,
        "lost": max(0, accepted - applied - dead),
        "dead_letters": dead,
        "throughput_per_s": round(applied / (seconds + drain_seconds), 1),
        "drain_seconds_after_load": round(drain_seconds, 1),
        "max_backlog": max(s["backlog"] for s in samples),
        "lag_seconds": {
            "p50": round(_pct(lags, 0.5), 3),
            "p99": round(_pct(lags, 0.99), 3),
            "max": round(max(lags, default=0.0), 3),
        },
        "rss": growth,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    log(f"soak {args.seconds:.0f}s at {args.rate:.0f}/s; logs in {workdir}")
    result = soak(args.seconds, args.rate, workdir, args.threads)
    summary = {k: v for k, v in result.items() if k != "samples"}
    summary["verdict"] = verdict(result)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
