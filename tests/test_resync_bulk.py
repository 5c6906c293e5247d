"""resync through ``POST /contacts/batch`` (:mod:`calendly_brevo.resync_bulk`): contacts pushed
before go out a page per request, a second run sends nothing, and a live event that moves a
contact while its page is in flight is not overwritten by the page's older projection."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from calendly_brevo.brevo.bulk import ContactUpdate
from calendly_brevo.ledger.memory import MemoryLedger
from calendly_brevo.resync import Resync, selected
from calendly_brevo.resync_bulk import BulkResync
from tests import payloads
from tests.worker.fakes import RecordingBrevo
from worker.pipeline import Pipeline

N = 25


def uri(i: int) -> str:
    return payloads.invitee_uri(f"EVB{i}", f"INB{i}")


def email(i: int) -> str:
    return f"person{i:02d}@example.com"


def booked(ledger: MemoryLedger, brevo: RecordingBrevo) -> None:
    """``N`` bookings processed live: each contact pushed once, its push recorded."""
    pipe = Pipeline(payloads.settings(), ledger, brevo)
    for i in range(N):
        doc = payloads.invitee_created(email=email(i), invitee_uri=uri(i))
        assert pipe.process(payloads.body(doc).decode(), time.time()).status == "applied"


def moved() -> Any:
    """The discovery call now maps to list 12 instead of 10."""
    mapping = payloads.SEED_CONFIG["connectors"]["calendly"]["event_mapping"]
    entry = {**mapping["discovery_call"], "list_id": 12}
    return payloads.settings(
        connectors={"calendly": {"event_mapping": {**mapping, "discovery_call": entry}}}
    )


def bulk_into(
    brevo: RecordingBrevo, pages: list[int], before: Callable[[], None] = lambda: None
) -> Callable[[Sequence[ContactUpdate]], list[Any]]:
    """A ``/contacts/batch`` that writes into ``brevo``'s log of upserts (one order for all
    writes); ``before`` runs first, as a live event landing while the page is in flight."""

    def bulk(updates: Sequence[ContactUpdate]) -> list[Any]:
        before()
        pages.append(len(updates))
        for u in updates:
            brevo.upserts.append((u.email, dict(u.attributes), u.list_ids, u.unlink_list_ids))
        return [None] * len(updates)

    return bulk


def test_contacts_pushed_before_go_out_a_page_per_request_and_a_second_run_sends_nothing() -> None:
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    booked(ledger, brevo)
    brevo.upserts.clear()
    pages: list[int] = []
    settings = moved()

    def run() -> Any:
        resync = BulkResync(ledger, settings.rules, brevo, bulk=bulk_into(brevo, pages), page=10)
        return resync.run(selected(ledger, None))

    summary = run()
    assert (summary.checked, summary.changed, summary.failures) == (N, N, 0)
    assert pages == [10, 10, 5]  # 3 requests instead of 25
    assert summary.calls == 3
    assert {(lists, unlink) for _, _, lists, unlink in brevo.upserts} == {((12,), (10,))}
    assert len(brevo.upserts) == N  # only the batch wrote: no single upserts
    again = run()
    assert (again.changed, again.calls) == (0, 0)
    assert pages == [10, 10, 5]
    # The same as the one-by-one resync would leave: nothing more to push.
    assert Resync(ledger, settings.rules, brevo).run(selected(ledger, None)).changed == 0


def test_a_live_event_during_the_page_is_not_overwritten_by_the_pages_older_projection() -> None:
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    booked(ledger, brevo)
    brevo.upserts.clear()
    settings = moved()
    live = Pipeline(settings, ledger, brevo)

    def cancel_person_3() -> None:
        if not pages:  # the first page only
            doc = payloads.invitee_canceled(email=email(3), invitee_uri=uri(3))
            assert live.process(payloads.body(doc).decode(), time.time()).status == "applied"

    pages: list[int] = []
    bulk = bulk_into(brevo, pages, before=cancel_person_3)
    # --all: the page carries every attribute, BOOKING_STATUS "booked" for person 3 included.
    resync = BulkResync(ledger, settings.rules, brevo, full=True, bulk=bulk, page=10)
    summary = resync.run(selected(ledger, None))
    assert summary.failures == 0
    writes = [attrs for who, attrs, _, _ in brevo.upserts if who == email(3)]
    statuses = [attrs.get("BOOKING_STATUS") for attrs in writes]
    # live push (cancelled), then the page's stale one (booked), then the repair (cancelled).
    assert statuses == ["cancelled", "booked", "cancelled"]
    last = ledger.last_pushed(email(3))
    assert last is not None and last.attributes["BOOKING_STATUS"] == "cancelled"
    assert Resync(ledger, settings.rules, brevo).run(selected(ledger, None)).changed == 0
