"""7. Resync: ``contacts`` stored contacts brought to the fake Brevo (``tests.fakes.brevo`` in
its own process: OpenAPI validation, per-family fixed-window limits of R per second, 429 over
them) by one ``calendly-brevo resync`` at R per family (the worker's buckets set to R, in Redis).

Two cases: contacts Brevo holds, last pushed under an older mapping (``resync --all``: updates
through ``POST /contacts/batch``, ``brevo.batch.max_contacts`` each), and, with ``--new``,
contacts never pushed, as after a dry run (``resync``: ``POST /contacts/import``,
``brevo.batch.max_import`` each, read back with ``GET /contacts``).

Figure: wall time of the command against the per-call floor, ``contacts / R`` (one call per
contact at R per second), as a ratio. The contacts are written straight into the ``invitees``
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
    BREVO_KEY,
    LIST_ID,
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

#: Issue 16's target for a resync of changed contacts (through /contacts/batch).
TARGET = 0.05


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


def mark_pushed_earlier(n: int, brevo_url: str) -> None:
    """Make the ``n`` stored contacts *changed* rather than new: Brevo holds them (one
    ``POST /contacts/import`` into the fake) and the connector last pushed them under another
    mapping (a ``pushed_projections`` row each with an older fingerprint and no attributes)."""
    import httpx
    import psycopg

    with psycopg.connect(PG_BASE) as conn:
        conn.execute(f'SET search_path TO "{SCHEMA}"')
        emails = [row[0] for row in conn.execute("SELECT DISTINCT email FROM invitees")]
        now = datetime.now(UTC)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO pushed_projections (email, attributes, list_ids, projection_hash, "
                "mapping_fingerprint, pushed_at, event_id) VALUES (%s, '{}', '[]', %s, %s, %s, "
                "NULL)",
                [(e, "0" * 64, "an-older-mapping", now) for e in emails],
            )
    body = {"jsonBody": [{"email": e} for e in emails], "listIds": [LIST_ID]}
    headers = {"api-key": BREVO_KEY}
    answer = httpx.post(f"{brevo_url}/contacts/import", json=body, headers=headers, timeout=60)
    answer.raise_for_status()
    assert len(emails) == n, (len(emails), n)


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
        if opts.changed:
            mark_pushed_earlier(contacts, fake.base_url)
        what = "pushed under an older mapping" if opts.changed else "never pushed"
        log(f"resync: {contacts:,} contacts stored ({what}); floor {floor:.0f} s at {rate}/s")
        t0 = time.monotonic()
        args = ["resync", "--all", "--json"] if opts.changed else ["resync", "--json"]
        done = run_cli(args, env, timeout=floor * 3 + 300)
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
            f"resync {'--all of' if opts.changed else 'of'} {contacts:,} "
            f"{'changed' if opts.changed else 'new'} contacts, R = {rate}/s per family",
            f"{took:.0f} s = {ratio:.2f} x floor",
            f"floor {floor:.0f} s (1 call per contact / R)",
            "<= 0.05 x floor" if opts.changed else "reported",
            (ok and ratio <= TARGET) if opts.changed else (None if ok else False),
            note=f"{summary['calls']:,} calls ({summary['calls'] / contacts:.3f} per contact), "
            f"{throttled} answered 429, {in_brevo:,} contacts in the fake Brevo, failures "
            f"{summary['failures']}; "
            + (
                "changed contacts go brevo.batch.max_contacts per POST /contacts/batch"
                if opts.changed
                else "new contacts go brevo.batch.max_import per POST /contacts/import, read "
                "back with GET /contacts (the fake applies an import at once; Brevo's "
                "latency is not published)"
            ),
        )
    ]


def _short(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("checked", "changed", "calls", "failures")}


def add_arguments(parser: Any) -> None:
    parser.add_argument("--rate", type=int, default=10, help="R, Brevo requests/s per family")
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument(
        "--new",
        dest="changed",
        action="store_false",
        help="contacts never pushed (after a dry run: imported through POST /contacts/import) "
        "instead of contacts Brevo holds under an older mapping (updated through "
        "POST /contacts/batch)",
    )
