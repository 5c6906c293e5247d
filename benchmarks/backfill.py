"""6. Backfill: ``invitees`` invitees in the fake Calendly (``tests.fakes.calendly``: its data
generator's mix of one-on-one and group events, host cancellations, reschedule pairs and
no-shows; pages of 100) walked by ``calendly-brevo backfill`` and applied by two worker processes
(running during the walk) to the zero-latency Brevo stand-in. Figures: wall time to walk, time
until everything enqueued is applied, and the calls made to each API (counted by both fakes)
against the fewest the walk can make: one page of scheduled events per 100 events, one
invitee page per event, plus ``/users/me``.

``--rate R`` runs it against the tests' fake Brevo (a process of its own) at R requests/s per
family instead, with the worker's buckets at R, and reports the time from the start of the walk
to the last envelope applied against the per-call floor: one ``/contacts`` call per envelope and
one ``POST /events`` per custom event, the two families in parallel, so the floor is the larger
count / R (issue 16: 12,239 upserts, 11,627 events at 10/s, about 1,224 s). ``--threads``,
``--processes`` and ``--live-imports`` (first-time contacts through ``POST /contacts/import``)
size the worker as for ``burst``.
"""

from __future__ import annotations

import math
import tempfile
import time
from argparse import Namespace
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    CLI,
    CONFIG,
    EVENT_TYPE,
    LIST_ID,
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
from benchmarks.fakebrevo import (
    UNLIMITED_RATE,
    FakeBrevoProc,
    add_import_arguments,
    fake_brevo,
    rate_config,
    work_calls,
)
from benchmarks.pipeline import worker_pids

#: Issue 16: a backfill at Brevo's 10/s within a tenth of the per-call floor.
FLOOR_TARGET = 0.1


def run(opts: Namespace) -> list[Row]:
    from datetime import UTC, datetime

    from tests.fakes.calendly import FakeCalendly, running_fake_calendly

    invitees = opts.invitees if not opts.quick else min(opts.invitees, 1000)
    state = FakeCalendly()
    # The generator makes every 5th event a group of 3: 7 invitees per 5 events.
    counts = state.generate(math.ceil(invitees * 5 / 7), now=datetime(2026, 1, 1, tzinfo=UTC))
    workdir = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    brevo_port = free_port()
    with running_fake_calendly(state) as cal, ExitStack() as stack:
        base = _mapped_config(state.event_types)
        if opts.rate:
            fake: FakeBrevoProc | None = stack.enter_context(
                fake_brevo(brevo_port, workdir, rate=opts.rate, import_delay=opts.import_delay)
            )
            config = rate_config(
                opts.rate, live_imports=opts.live_imports, base=base, margin=opts.rate_margin
            )
        else:
            fake, config = None, rate_config(UNLIMITED_RATE, base=base)
        env = base_env(
            workdir,
            brevo_url=f"http://127.0.0.1:{brevo_port}/v3",
            CONFIG_TEXT=config,
            CALENDLY_ACCESS_TOKEN=cal.pat,
            CALENDLY_API_URL=cal.base_url,
        )
        reset_redis()
        reset_postgres(env)
        if fake is None:
            stub = stack.enter_context(
                running(
                    [PY, "-m", "benchmarks.brevo_stub", "--port", str(brevo_port)],
                    env,
                    workdir / "stub.log",
                )
            )
            wait_http(f"http://127.0.0.1:{brevo_port}/__stub__/counts", stub)
        worker_argv = [*CLI, "worker", "--processes", str(opts.processes)]
        with running(
            [*worker_argv, "--threads", str(opts.threads)], env, workdir / "worker.log"
        ) as worker:
            worker_pids(worker, opts.processes)
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
            _log_batches(env["METRICS_PORT"])
        if fake is None:
            brevo = httpx.get(f"http://127.0.0.1:{brevo_port}/__stub__/counts").json()
        else:
            fake_state = fake.state()
            brevo = _fake_counts(fake_state)
            paths = Counter(
                f"{r['method']} {r['path']} {r['status']}" for r in fake_state["requests"]
            )
            log(f"backfill: Brevo requests by path {dict(paths.most_common(12))}")
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
    rows = _floor_rows(opts, brevo, enqueued, applied_at) if opts.rate else []
    return [
        *rows,
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
            f"{brevo.get('events', 0):,} events"
            if not opts.rate
            else f"{brevo['contact_calls']:,} contacts, {brevo['event_calls']:,} events calls",
            f"{statuses.get('applied', 0):,} applied",
            "reported",
            note="contacts = upserts + list unlinks; events = custom events (created, "
            "rescheduled, canceled, no_show)",
        ),
    ]


def _log_batches(metrics_port: str) -> None:
    """The worker's batch outcomes (``calendly_brevo_brevo_batches_total``), for the log."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    lines = [ln for ln in text.splitlines() if ln.startswith("calendly_brevo_brevo_batches_total")]
    log("backfill: worker batches " + "; ".join(lines))


def _mapped_config(event_types: list[dict[str, Any]]) -> str:
    """The benchmark config with each of the fake Calendly's event types mapped to the list, as
    a user maps the event types they sell with (an import needs a list: Brevo's ``listIds``)."""
    bench = f'      bench:\n        list_id: {LIST_ID}\n        event_type_uri: "{EVENT_TYPE}"\n'
    assert bench in CONFIG
    mapping = "".join(
        f"      {et['slug'].replace('-', '_')}:\n        list_id: {LIST_ID}\n"
        f'        event_type_uri: "{et["uri"]}"\n'
        for et in event_types
    )
    return CONFIG.replace(bench, mapping)


def _fake_counts(state: dict[str, Any]) -> dict[str, int]:
    """What the fake Brevo holds and the calls it answered (:func:`work_calls`)."""
    calls = work_calls(state)
    return {
        "contact_calls": calls["contacts"],
        "event_calls": calls["events"],
        "contacts": state["counts"]["contacts"],
        "events": state["counts"]["events"],
        "rate_limited": sum(state["rate_limited"].values()),
        "violations": len(state["violations"]),
    }


def _floor_rows(
    opts: Namespace, brevo: dict[str, int], enqueued: int, applied_at: float
) -> list[Row]:
    # One /contacts call per envelope and one POST /events per custom event when each is its
    # own request; the two families run in parallel.
    floor = max(enqueued, brevo["events"]) / opts.rate
    ratio = applied_at / floor
    return [
        Row(
            "backfill",
            f"at R = {opts.rate}/s: start of the walk to all applied / per-call floor",
            f"{applied_at:.0f} s ({ratio:.2f} x floor)",
            f"floor {floor:.0f} s (max({enqueued:,} upserts, {brevo['events']:,} events) / R); "
            f"made {brevo['contact_calls']:,} contacts, {brevo['event_calls']:,} events calls",
            f"<= {FLOOR_TARGET} x floor",
            ratio <= FLOOR_TARGET,
        ),
        Row(
            "backfill",
            f"at R = {opts.rate}/s: 429s / spec violations",
            f"{brevo['rate_limited']} / {brevo['violations']}",
            "",
            "0 / 0",
            brevo["rate_limited"] == 0 and brevo["violations"] == 0,
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
    parser.add_argument(
        "--rate",
        type=int,
        default=0,
        help="R: the fake Brevo at R requests/s per family, and the floor figure (0: the "
        "zero-latency stand-in, unlimited)",
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    add_import_arguments(parser)
