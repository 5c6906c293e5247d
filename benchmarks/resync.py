"""7. Resync: ``contacts`` stored contacts, all changed (never pushed, as after a dry run), brought
to the fake Brevo (``tests.fakes.brevo`` in its own process: OpenAPI validation, per-family
fixed-window limits of R per second, 429 over them) by one ``calendly-brevo resync`` at R per
family (the worker's buckets set to R, in Redis).

Figure: wall time of the command against the per-call floor, ``contacts / R`` (one call per
contact at R per second), as a ratio. Today's push step (:func:`calendly_brevo.resync.one_by_one`)
makes exactly one upsert per contact, so the ratio measures the bucket and the command's own
cost per contact; a push step on Brevo's batch endpoints (the bulk issue) is what can go below
1, and that issue sets the target. The contacts are written straight into the ``invitees``
table (what a dry run stores), so the setup takes seconds, not a dry run of N webhooks.

``python -m benchmarks resync`` (10,000 contacts at 10/s: a 1,000 s floor),
``python -m benchmarks resync --contacts 500`` or ``--quick`` (500) for a quick check.
"""

from __future__ import annotations

import json
import tempfile
import time
from argparse import Namespace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    PG_BASE,
    SCHEMA,
    Row,
    base_env,
    body,
    free_port,
    log,
    reset_postgres,
    reset_redis,
    run_cli,
    template,
)
from benchmarks.fakebrevo import fake_brevo, rate_config


def store_contacts(n: int) -> None:
    """``n`` invitee records (one contact each) in the benchmark schema, as a dry run would
    have stored them, in one transaction."""
    import psycopg

    from calendly_brevo.events import parse_envelope, read_event
    from calendly_brevo.state import record_from_event

    tmpl = template()
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        record = record_from_event(read_event(parse_envelope(body(tmpl, i).decode())))
        assert record is not None
        data = json.dumps(record.to_dict())
        rows.append((record.invitee_uri, record.email, record.status, data, now))
    with psycopg.connect(PG_BASE) as conn:
        conn.execute(f'SET search_path TO "{SCHEMA}"')
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO invitees (invitee_uri, email, status, data, updated_at) "
                "VALUES (%s, %s, %s, %s::json, %s)",
                rows,
            )


def run(opts: Namespace) -> list[Row]:
    rate = opts.rate
    contacts = min(opts.contacts, 500) if opts.quick else opts.contacts
    floor = contacts / rate
    workdir = Path(tempfile.mkdtemp(prefix="bench-resync-"))
    with fake_brevo(free_port(), workdir, rate=rate) as fake:
        env = base_env(workdir, brevo_url=fake.base_url, CONFIG_TEXT=rate_config(rate))
        env.pop("PROMETHEUS_MULTIPROC_DIR")
        reset_redis()
        reset_postgres(env)
        store_contacts(contacts)
        log(f"resync: {contacts:,} contacts stored; floor {floor:.0f} s at {rate}/s")
        t0 = time.monotonic()
        done = run_cli(["resync", "--json"], env, timeout=floor * 3 + 300)
        took = time.monotonic() - t0
        if done.returncode != 0:
            raise RuntimeError(f"resync failed: {done.stdout[-1000:]} {done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        state = fake.state()
    requests = [q for q in state["requests"] if q["path"].startswith("/v3/contacts")]
    throttled = sum(1 for q in requests if q["status"] == 429)
    in_brevo = len(state["contacts"])
    ratio = took / floor
    log(f"resync: {took:.1f} s, {ratio:.2f} x floor, summary {_short(summary)}, 429s {throttled}")
    ok = in_brevo == contacts and summary["failures"] == 0
    return [
        Row(
            "resync",
            f"{contacts:,} stored contacts, all changed, R = {rate}/s per family",
            f"{took:.0f} s = {ratio:.2f} x floor",
            f"floor {floor:.0f} s (1 call per contact / R)",
            "reported; the bulk issue sets the target",
            None if ok else False,
            note=f"{summary['calls']:,} calls ({summary['calls'] / contacts:.2f} per contact), "
            f"{throttled} answered 429, {in_brevo:,} contacts in the fake Brevo, failures "
            f"{summary['failures']}; the bucket's sustained rate is R / 1.04 (its margin), so "
            "one call per contact cannot go below 1.04 x floor",
        )
    ]


def _short(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("checked", "changed", "calls", "failures")}


def add_arguments(parser: Any) -> None:
    parser.add_argument("--rate", type=int, default=10, help="R, Brevo requests/s per family")
    parser.add_argument("--contacts", type=int, default=10_000)
