"""The ledger contract, continued: the done events whose custom event was never sent (what
``resync --events`` lists), on every implementation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from calendly_brevo.ledger import Arrival, Ledger
from tests.ledger.conftest import A


def done(ledger: Ledger, event_id: str, status: str, effects: dict[str, object]) -> None:
    uri = f"https://api.calendly.com/invitees/{event_id}"
    ledger.claim(Arrival(event_id, "invitee.canceled", uri, A, "{}", "webhook", None))
    ledger.record_effect(event_id, dict(effects), finish=status)


def test_done_events_without_a_sent_custom_event_are_listed_oldest_first(ledger: Ledger) -> None:
    done(ledger, "e1-dry", "dry_run", {})
    done(ledger, "e2-off", "suppressed", {})
    done(ledger, "e3-contact-only", "applied", {"contact": True})
    done(ledger, "e4-sent", "applied", {"contact": True, "event": "calendly_invitee_canceled"})
    done(ledger, "e5-ignored", "ignored", {})
    done(ledger, "e6-in-doubt", "applied", {"contact": True, "event_in_doubt": True})
    ledger.claim(Arrival("e7-open", "invitee.created", None, A, "{}", "webhook", None))

    rows = ledger.unsent_events()
    ids = [r.event_id for r in rows]
    assert ids == ["e1-dry", "e2-off", "e3-contact-only", "e6-in-doubt"]
    assert [r.status for r in rows] == ["dry_run", "suppressed", "applied", "applied"]
    assert rows[0].event_name == "invitee.canceled" and rows[0].payload == "{}"
    assert rows[3].effects == {"contact": True, "event_in_doubt": True}


def test_unsent_events_page_by_time_and_id_and_honour_since(ledger: Ledger) -> None:
    for n in range(5):
        done(ledger, f"p{n}", "dry_run", {})
    time.sleep(0.01)
    cut = datetime.now(UTC)
    time.sleep(0.01)
    done(ledger, "late", "dry_run", {})

    first = ledger.unsent_events(limit=2)
    assert len(first) == 2
    last = first[-1]
    assert last.applied_at is not None
    rest = ledger.unsent_events(after=(last.applied_at, last.event_id))
    assert sorted(r.event_id for r in first + rest) == ["late", "p0", "p1", "p2", "p3", "p4"]
    assert not {r.event_id for r in first} & {r.event_id for r in rest}
    assert [r.event_id for r in ledger.unsent_events(since=cut)] == ["late"]
    assert ledger.unsent_events(since=cut + timedelta(days=1)) == []
