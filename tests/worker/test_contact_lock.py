"""Per-contact ordering across processes: the Postgres ledger's advisory ``contact_lock``.

Two separate worker processes (spawned, each with two threads, its own engine and pool) get
the same events for two contacts, in opposite orders, at the same moment. Their Brevo ports
record when each call starts and ends; for one contact no two calls overlap, whichever process
made them, while calls for different contacts do run side by side (the lock is per contact,
not global). Each event is applied by exactly one of the two processes.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from calendly_brevo.brevo.client import EventScan
from tests import payloads

pytestmark = pytest.mark.integration

EMAILS = ("lock-a@example.com", "lock-b@example.com")
CALL_SECONDS = 0.03


class TimingBrevo:
    """A Brevo port that records ``(email, call, start, end)`` of every call."""

    dry_run = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float, float]] = []
        self.lock = threading.Lock()

    def _call(self, email: str, what: str) -> None:
        start = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the host
        time.sleep(CALL_SECONDS)
        end = time.monotonic()
        with self.lock:
            self.calls.append((email, what, start, end))

    def upsert_contact(
        self,
        email: str,
        attributes: dict[str, Any],
        list_ids: Any = (),
        unlink_list_ids: Any = (),
        *,
        existing: bool = False,
    ) -> None:
        self._call(email, "upsert")

    def create_event(self, event_name: str, *, email: str, **_: Any) -> None:
        self._call(email, "event")

    def scan_events(self, event_name: str, **_: Any) -> EventScan:
        return EventScan(event_name, None, None, frozenset(), complete=True)


def _settings(database_url: str, data_dir: str) -> Any:
    return payloads.settings(storage={"database_url": database_url, "data_dir": data_dir})


def work(
    database_url: str,
    data_dir: str,
    bodies: list[str],
    out: str,
    barrier: Any,
) -> None:
    """One worker process: two threads push ``bodies`` through a Pipeline on Postgres."""
    from calendly_brevo.bootstrap import Services
    from worker.pipeline import Pipeline

    services = Services(_settings(database_url, data_dir))
    brevo = TimingBrevo()
    pipeline = Pipeline(services.settings, services.ledger, brevo)
    barrier.wait(60)
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda b: pipeline.process(b, time.time()).status, bodies))
    services.close()
    Path(out).write_text(json.dumps({"calls": brevo.calls, "outcomes": outcomes}))


def bookings(email: str, n: int) -> list[str]:
    tag = email.split("@")[0].upper().replace("-", "")
    return [
        payloads.body(
            payloads.invitee_created(
                email=email,
                invitee_uri=payloads.invitee_uri(f"{tag}E{i}", f"{tag}I{i}"),
                created_at=f"2030-01-0{1 + i % 9}T10:00:00.000000Z",
            )
        ).decode()
        for i in range(n)
    ]


def test_two_processes_never_interleave_brevo_calls_for_one_contact(
    tmp_path: Path, postgres_url: str
) -> None:
    from calendly_brevo.bootstrap import Services
    from calendly_brevo.db.migrate import upgrade

    services = Services(_settings(postgres_url, str(tmp_path / "data")))
    upgrade(services.engine)
    services.close()

    a, b = (bookings(email, 8) for email in EMAILS)
    interleaved = [body for pair in zip(a, b, strict=True) for body in pair]
    orders = [interleaved, interleaved[::-1]]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    outs = [tmp_path / f"proc{i}.json" for i in range(2)]
    procs = [
        ctx.Process(
            target=work,
            args=(postgres_url, str(tmp_path / "data"), order, str(out), barrier),
        )
        for order, out in zip(orders, outs, strict=True)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]

    results = [json.loads(out.read_text()) for out in outs]
    calls = [(proc, *call) for proc, r in enumerate(results) for call in r["calls"]]
    # Each event applied once, by one process or the other; the other saw a duplicate.
    outcomes = [o for r in results for o in r["outcomes"]]
    assert outcomes.count("applied") == len(interleaved)
    assert outcomes.count("duplicate") == len(interleaved)
    assert all(r["outcomes"].count("applied") > 0 for r in results), "one process did it all"

    for email in EMAILS:
        mine = sorted((start, end, proc) for proc, e, _, start, end in calls if e == email)
        assert len(mine) == 2 * 8  # an upsert and an event per booking
        for (_, e1, p1), (s2, _, p2) in itertools.pairwise(mine):
            assert s2 >= e1, f"{email}: call in process {p2} started while {p1}'s ran"
    # The lock is per contact: calls for the two contacts did run at the same time.
    spans = {e: [(s, end) for _, em, _, s, end in calls if em == e] for e in EMAILS}
    assert any(s1 < e2 and s2 < e1 for s1, e1 in spans[EMAILS[0]] for s2, e2 in spans[EMAILS[1]]), (
        "no two contacts were ever served at once"
    )
