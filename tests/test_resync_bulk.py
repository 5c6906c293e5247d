"""resync through ``POST /contacts/batch`` (:mod:`calendly_brevo.resync_bulk`): contacts pushed
before go out a page per request, a second run sends nothing, and a live event that moves a
contact while its page is in flight is not overwritten by the page's older projection."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from calendly_brevo.brevo.bulk import ContactUpdate
from calendly_brevo.errors import BrevoTransientError
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


def lists_of(brevo: RecordingBrevo, who: str) -> set[int]:
    """The lists Brevo holds for ``who`` after every write, in their order."""
    held: set[int] = set()
    for address, _, add, unlink in brevo.upserts:
        if address == who:
            held = (held | set(add)) - set(unlink)
    return held


@pytest.mark.parametrize("case", ["answered", "answer lost", "answer lost, live push failed"])
def test_a_page_that_lands_after_a_live_list_move_leaves_no_list_behind(case: str) -> None:
    """The chaos run's ``lists [11, 21], model says (21,)``: the page adds the contact to the
    list its older projection wanted; a no-show that arrived meanwhile takes the contact off
    that list. Whether the page's answer came back or was lost after Brevo applied it, and
    whether the no-show's own push went through or waits for its retry, Brevo ends with the
    no-show's lists."""
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    booked(ledger, brevo)
    settings = moved()  # the page: add 12, unlink 10
    settings = payloads.settings(
        connectors=settings.model_dump()["connectors"],
        brevo={"list_moves": {"on_no_show": {"add": [21], "remove": [12]}}},
    )
    live = Pipeline(settings, ledger, brevo)
    no_show = payloads.body(payloads.no_show_created(email=email(3), invitee_uri=uri(3))).decode()

    def no_show_person_3() -> None:
        if not pages:
            if case.endswith("failed"):  # the no-show is recorded; its push waits for a retry
                brevo.fail_upserts = 1
                with pytest.raises(BrevoTransientError):
                    live.process(no_show, time.time())
            else:
                assert live.process(no_show, time.time()).status == "applied"

    pages: list[int] = []
    inner = bulk_into(brevo, pages, before=no_show_person_3)

    def bulk(updates: Sequence[ContactUpdate]) -> list[Any]:
        results = inner(updates)
        if case.startswith("answer lost"):  # Brevo applied the page; its answer never came
            return [BrevoTransientError("timed out", maybe_applied=True)] * len(updates)
        return results

    resync = BulkResync(ledger, settings.rules, brevo, bulk=bulk, page=10)
    resync.run(selected(ledger, None))
    live.process(no_show, time.time())  # the no-show's retry, if it needs one
    assert lists_of(brevo, email(3)) == {21}
    assert lists_of(brevo, email(4)) == {12}
    assert Resync(ledger, settings.rules, brevo).run(selected(ledger, None)).changed == 0
