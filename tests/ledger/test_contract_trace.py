"""The ledger contract, continued (``test_contract.py`` is at its size limit): what ``trace``
reads back, on every implementation: the label of the signing key that verified an event, and
the log of the Brevo calls made for it across attempts, failed ones included."""

from __future__ import annotations

from typing import Any

from calendly_brevo.ledger import Arrival, Claim, Failure, Ledger, record_durably
from tests.ledger.conftest import A, Opener

URI = "https://api.calendly.com/invitees/1"


def arrive(ledger: Ledger, event_id: str, source: str = "webhook", key: str | None = None) -> Claim:
    new = Arrival(event_id, "invitee.created", URI, A, "{}", source, None, key)
    return ledger.claim(new)


def call(attempt: int, status: str, route: str = "/contacts") -> dict[str, Any]:
    return {
        "attempt": attempt,
        "at": "2026-12-03T09:30:00.000+00:00",
        "method": "POST",
        "route": route,
        "status": status,
        "ms": 12.5,
    }


def test_the_signing_key_label_of_the_first_arrival_is_kept(ledger: Ledger) -> None:
    arrive(ledger, "ev1", key="signing_key:1a2b3c4d")
    ledger.finish("ev1", "failed", "Boom")
    arrive(ledger, "ev1", key="previous_signing_keys.0:99999999")  # a retry, or a redelivery
    row = ledger.event("ev1")
    assert row is not None and row.signature_key == "signing_key:1a2b3c4d"

    arrive(ledger, "bf", source="backfill")  # nothing verified a backfill
    row = ledger.event("bf")
    assert row is not None and row.signature_key is None


def test_a_failed_attempts_calls_come_back_at_the_next_claim_and_stay(opened: Opener) -> None:
    ledger = opened()
    first = arrive(ledger, "ev1")
    assert first.calls == []
    failed = [call(1, "502")]
    ledger.finish("ev1", "failed", "BrevoTransientError: HTTP 502", calls=failed)

    again = opened().claim(Arrival("ev1", "invitee.created", URI, A, "{}", "webhook", None))
    assert again.calls == failed
    upserted = [*failed, call(2, "204")]
    ledger.record_effect("ev1", {"contact": True}, calls=upserted)
    ledger.record_effect("ev1", {"contact": True, "event": "x"})  # no calls=: the log stays
    row = ledger.event("ev1")
    assert row is not None and row.calls == upserted

    done = [*upserted, call(2, "204", "/events")]
    record_durably(ledger, "ev1", {"contact": True, "event": "x"}, "applied", calls=done)
    row = opened().event("ev1")
    assert row is not None and (row.status, row.calls) == ("applied", done)
    assert row.effects == {"contact": True, "event": "x"}  # the log is not an effect


def test_a_dead_letter_keeps_the_calls_of_its_last_attempt(ledger: Ledger) -> None:
    arrive(ledger, "ev1")
    refused = [call(1, "400", "/events")]
    failure = Failure("ev1", "invitee.created", "brevo_permanent", "400", 1, "{}", "webhook", None)
    ledger.dead_letter(failure, calls=refused)
    row = ledger.event("ev1")
    assert row is not None and (row.status, row.calls) == ("dead", refused)

    ledger.finish("ev1", "dead", "again")  # a finish without calls= leaves them
    row = ledger.event("ev1")
    assert row is not None and row.calls == refused
