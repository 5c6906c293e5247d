"""6. Backfill: ``invitees`` invitees in the fake Calendly (``tests.fakes.calendly``: its data
generator's mix of one-on-one and group events, host cancellations, reschedule pairs and
no-shows; pages of 100) walked by ``calendly-brevo backfill`` and applied by two worker processes
(running during the walk) to the zero-latency Brevo stand-in. Figures: wall time to walk, time
until everything enqueued is applied, and the calls made to each API (counted by both fakes)
against the fewest the walk can make: one page of scheduled events per 100 events, one
invitee page per event, plus ``/users/me``.
"""

from __future__ import annotations

import math
import tempfile
import time
from argparse import Namespace
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    CLI,
    PY,
    Row,
    base_env,
    free_port,
    log,
    pg_scalar,
    queue_outstanding,
    reset_postgres,
    reset_redis,
    run_cli,
    running,
    wait_http,
)
from benchmarks.fakebrevo import UNLIMITED
from benchmarks.pipeline import worker_pids


def run(opts: Namespace) -> list[Row]:
    from datetime import UTC, datetime

    from tests.fakes.calendly import FakeCalendly, running_fake_calendly

    invitees = opts.invitees if not opts.quick else min(opts.invitees, 1000)
    state = FakeCalendly()
    # The generator makes every 5th event a group of 3: 7 invitees per 5 events.
    counts = state.generate(math.ceil(invitees * 5 / 7), now=datetime(2026, 1, 1, tzinfo=UTC))
    workdir = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    stub_port = free_port()
    with running_fake_calendly(state) as cal:
        env = base_env(
            workdir,
            brevo_url=f"http://127.0.0.1:{stub_port}/v3",
            CONFIG_TEXT=UNLIMITED,
            CALENDLY_ACCESS_TOKEN=cal.pat,
            CALENDLY_API_URL=cal.base_url,
        )
        reset_redis()
        reset_postgres(env)
        with (
            running(
                [PY, "-m", "benchmarks.brevo_stub", "--port", str(stub_port)],
                env,
                workdir / "stub.log",
            ) as stub,
            running(
                [*CLI, "worker", "--processes", "2", "--threads", "4"],
                env,
                workdir / "worker.log",
            ) as worker,
        ):
            wait_http(f"http://127.0.0.1:{stub_port}/__stub__/counts", stub)
            worker_pids(worker, 2)
            state.requests.clear()
            t0 = time.monotonic()
            cli_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            done = run_cli(["backfill", "--since", "2020-01-01"], cli_env, timeout=1200)
            walked = time.monotonic() - t0
            if done.returncode != 0:
                raise RuntimeError(f"backfill failed: {done.stderr[-2000:]}")
            enqueued = _enqueued(done.stdout)
            deadline = time.monotonic() + 1800
            while queue_outstanding() and time.monotonic() < deadline:
                if not worker.alive():
                    raise RuntimeError(f"worker exited:\n{worker.tail()}")
                time.sleep(0.5)
            applied_at = time.monotonic() - t0
            brevo = httpx.get(f"http://127.0.0.1:{stub_port}/__stub__/counts").json()
        calendly = Counter(_kind(path) for _, path, _ in state.requests)
    statuses = dict(
        pg_scalar(
            "SELECT json_object_agg(status, n) FROM "
            "(SELECT status, count(*) AS n FROM processed_events GROUP BY status) s"
        )
        or {}
    )
    dead = pg_scalar("SELECT count(*) FROM dead_letters")
    events = counts["events"]
    minimum = math.ceil(events / 100) + events + 1
    total_calendly = sum(calendly.values())
    processed = sum(statuses.values())
    log(
        f"backfill: {counts}, walked in {walked:.1f} s, applied after {applied_at:.1f} s, "
        f"Calendly {dict(calendly)}, Brevo {brevo}, outcomes {statuses}, dead {dead}"
    )
    return [
        Row(
            "backfill",
            f"{counts['invitees']:,} invitees ({events:,} events): walk, then all applied",
            f"{walked:.0f} s walk, {applied_at:.0f} s applied",
            f"{enqueued:,} envelopes enqueued",
            "all applied, 0 dead",
            processed == enqueued and not dead,
            note=f"outcomes {statuses}; {enqueued / applied_at:.0f} envelopes/s end to end",
        ),
        Row(
            "backfill",
            "Calendly API calls",
            f"{total_calendly:,} ({', '.join(f'{k} {v}' for k, v in sorted(calendly.items()))})",
            f"fewest possible {minimum:,}",
            "= fewest",
            total_calendly <= minimum,
        ),
        Row(
            "backfill",
            "Brevo API calls",
            f"{brevo.get('upserts', 0) + brevo.get('contact_updates', 0):,} contacts, "
            f"{brevo.get('events', 0):,} events",
            f"{statuses.get('applied', 0):,} applied",
            "reported",
            note="contacts = upserts + list unlinks; events = custom events (created, "
            "rescheduled, canceled, no_show)",
        ),
    ]


def _kind(path: str) -> str:
    if path.endswith("/invitees"):
        return "invitee pages"
    if path.endswith("/scheduled_events"):
        return "event pages"
    return path.strip("/").split("/")[0]


def _enqueued(stdout: str) -> int:
    # "backfill done: N events, M invitees, K events enqueued"
    for line in stdout.splitlines():
        if line.startswith("backfill done"):
            return int(line.rsplit(",", 1)[1].split()[0])
    raise RuntimeError(f"no summary in backfill output: {stdout[-500:]}")


def add_arguments(parser: Any) -> None:
    parser.add_argument("--invitees", type=int, default=10_000)
