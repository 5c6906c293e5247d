"""3. Rate limiter fidelity: 4 worker processes share the Redis token bucket at R requests/s per
family; the fake Brevo enforces R per 1 s window and answers 429 above it. With a queue deep
enough to keep both families busy for the whole run, over ``duration`` seconds (60; ``--quick``:
15): the achieved rate of each family must be >= 0.95 R, with no 429, and no sliding 1 s
window (on the fake's arrival times) may hold more than R requests.

The achieved rate is counted from the fake's own request log (its clock), over ``duration``
seconds starting 2 s after the family's first request. The bucket spaces grants to
``R / (1 + margin)`` (margin 0.04, see ``calendly_brevo.ratelimit.bucket``), so the expected
figure is about 0.96 R.

The workers run with ``brevo.batch.enabled: false``, one request per contact and per custom
event: with batching, a second's custom events ride in two or three ``/events/batch`` requests
behind the contacts family's 10 creates, so the events family is never saturated and its rate
would measure the demand, not the bucket (2.40/s, "MISSED", on every commit since batching).
The batch paths' own rate-limit runs are ``burst`` and ``backfill``.
"""

from __future__ import annotations

import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CLI,
    Row,
    base_env,
    free_port,
    log,
    prefill,
    reset_postgres,
    reset_redis,
    running,
)
from benchmarks.fakebrevo import fake_brevo, rate_config
from tests.fakes.brevo_records import max_in_any_window

TARGET = 0.95


def achieved(requests: list[dict[str, Any]], family: str, duration: float) -> tuple[float, int]:
    """(requests/s answered 2xx over the window, 429s anywhere) for one family. The worker's
    start-up check (``GET`` attributes and lists) is left out: it comes seconds before the rest."""
    mine = [r for r in requests if r["family"] == family and r["method"] != "GET"]
    limited = sum(1 for r in mine if r["status"] == 429)
    ok = sorted(r["at"] for r in mine if 200 <= r["status"] < 300)
    if not ok:
        return 0.0, limited
    start = ok[0] + 2.0
    end = start + duration
    return sum(1 for t in ok if start <= t < end) / duration, limited


def densest_second(requests: list[dict[str, Any]], family: str) -> int:
    """The most of the family's work requests that arrived in any sliding 1 s window."""
    mine = [r["arrived"] for r in requests if r["family"] == family and r["method"] != "GET"]
    return max_in_any_window(mine)


def run(opts: Namespace) -> list[Row]:
    duration = 15.0 if opts.quick else opts.duration
    rate = opts.rate
    workdir = Path(tempfile.mkdtemp(prefix="bench-ratelimit-"))
    port = free_port()
    rows: list[Row] = []
    with fake_brevo(port, workdir, rate=rate) as fake:
        env = base_env(workdir, brevo_url=fake.base_url, CONFIG_TEXT=rate_config(rate, batch=False))
        reset_redis()
        reset_postgres(env)
        bookings = int(rate * (duration + 10) * 1.3)
        prefill(bookings)
        argv = [*CLI, "worker", "--processes", str(opts.processes), "--threads", str(opts.threads)]
        with running(argv, env, workdir / "worker.log") as proc:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait for the first Brevo request
                counts = fake.state()["counts"]["requests"]
                if counts.get("events"):
                    break
                if not proc.alive():
                    raise RuntimeError(f"worker exited:\n{proc.tail()}")
                time.sleep(0.5)
            time.sleep(duration + 3)
            state = fake.state()
    results = {f: achieved(state["requests"], f, duration) for f in ("contacts", "events")}
    violations = len(state["violations"])
    for family, (got, limited) in results.items():
        log(f"ratelimit {family}: {got:.2f}/s of {rate}, 429s {limited}")
        rows.append(
            Row(
                "ratelimit",
                f"{family}: achieved rate, {opts.processes} procs, {duration:.0f} s",
                f"{got:.2f}/s ({got / rate:.3f} R)",
                f"R = {rate}/s (fake Brevo limit)",
                f">= {TARGET} R",
                got >= TARGET * rate,
            )
        )
        densest = densest_second(state["requests"], family)
        rows.append(
            Row(
                "ratelimit",
                f"{family}: most requests in any sliding 1 s window",
                str(densest),
                f"R = {rate}",
                "<= R",
                densest <= rate,
            )
        )
        rows.append(
            Row(
                "ratelimit",
                f"{family}: 429s from Brevo",
                str(limited),
                "",
                "0",
                limited == 0,
                note="" if not violations else f"{violations} OpenAPI violations",
            )
        )
    return rows


def add_arguments(parser: Any) -> None:
    parser.add_argument("--rate", type=int, default=10, help="R, requests/s per family")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
