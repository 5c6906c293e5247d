"""The in-doubt lookups a batch's events share (``calendly_brevo/event_send.py``,
:class:`BatchScans`): a scan answers for another event of its batch only on that event's first
attempt after the batch's, only for what it read (the event's window, every page of it), and
only for a while; after that, an event is looked up on its own, as before.

The group pass's side (the batch recorded with the contacts' effects, a lost answer and a worker
that died each costing one lookup) is in ``tests/worker/test_group_pass.py``."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from calendly_brevo.brevo.client import EventScan
from calendly_brevo.errors import BrevoTransientError
from calendly_brevo.event_send import EVENT_BATCH, EVENT_IN_DOUBT, BatchScans, batch_of
from calendly_brevo.events import parse_envelope, read_event
from tests import payloads
from tests.worker.test_pipeline import memory_pipeline, send

WINDOW = (datetime(2024, 5, 1, 9, 0, tzinfo=UTC), datetime(2024, 5, 1, 10, 0, tzinfo=UTC))


def scan(*values: str, complete: bool = True, name: str = "booked") -> EventScan:
    return EventScan(name, *WINDOW, frozenset(values), complete=complete)


@pytest.mark.parametrize(
    ("effects", "attempts", "batch"),
    [
        ({EVENT_BATCH: ["b1", 1]}, 2, "b1"),  # the first attempt after the batch's
        ({EVENT_BATCH: ["b1", 1]}, 3, None),  # an attempt ran since: it may have sent it
        ({EVENT_BATCH: ["b1", 1]}, 1, None),
        ({}, 2, None),  # not sent in a batch
        ({EVENT_BATCH: "b1"}, 2, None),  # not what the group pass writes
        ({EVENT_BATCH: ["b1", "1"]}, 2, None),
    ],
)
def test_a_batchs_scans_answer_only_on_the_first_attempt_after_it(
    effects: dict[str, object], attempts: int, batch: str | None
) -> None:
    assert batch_of(effects, attempts) == batch


def test_a_scan_answers_for_what_it_read_and_nothing_else() -> None:
    scans = BatchScans()
    scans.add("b1", scan("e1", "e2"))
    scans.add("b1", scan("e9", complete=False, name="cancelled"))
    at = "2024-05-01T09:30:00Z"
    assert scans.answer("b1", "booked", at, "e2") is True
    assert scans.answer("b1", "cancelled", at, "e9") is True  # read, even if not all was
    assert scans.answer("b1", "booked", at, "e3") is False  # the whole window was read
    assert scans.answer("b1", "cancelled", at, "e3") is None  # it stopped early
    assert scans.answer("b1", "booked", "2024-05-01T09:59:30Z", "e3") is None  # window's edge
    assert scans.answer("b1", "booked", None, "e3") is None
    assert scans.answer("b2", "booked", at, "e2") is None  # another batch's


def test_scans_are_forgotten_after_their_time_and_past_the_batches_kept() -> None:
    at = "2024-05-01T09:30:00Z"
    expired = BatchScans(ttl=0.0)
    expired.add("b1", scan("e1"))
    assert expired.answer("b1", "booked", at, "e1") is None
    few = BatchScans(keep=2)
    for batch in ("b1", "b2", "b3"):
        few.add(batch, scan("e1"))
    assert [few.answer(b, "booked", at, "e1") for b in ("b1", "b2", "b3")] == [None, True, True]
    assert len(few._scans) == 2  # forgotten, not only unused
    short = BatchScans(ttl=0.05)
    short.add("b1", scan("e1"))
    time.sleep(0.1)
    short.add("b2", scan("e1"))
    assert list(short._scans) == ["b2"]


def test_an_event_sent_again_since_its_batch_is_looked_up_on_its_own() -> None:
    """Its batch's scan said Brevo lacked it, so its first attempt after the batch sent it, and
    lost that answer too: the next attempt cannot trust the batch's scan (it predates that
    send) and looks the event up itself, finding it."""
    pipeline, fake = memory_pipeline()
    env = payloads.invitee_created(email="ada@example.com")
    ident = read_event(parse_envelope(payloads.body(env))).identity
    fake.fail_events = 1  # the batch's attempt: the contact upserted, the event not sent
    with pytest.raises(BrevoTransientError):
        send(pipeline, env)
    effects = {"contact": True, EVENT_IN_DOUBT: True, EVENT_BATCH: ["b1", 1]}
    pipeline.ledger.record_effect(ident.event_id, effects)
    name = pipeline.rules.events.created
    pipeline.events.scans.add("b1", EventScan(name, None, None, frozenset(), complete=True))
    fake.lost_answers = 1
    with pytest.raises(BrevoTransientError):
        send(pipeline, env, attempt=2)  # the batch's scan: absent, so sent (answer lost)
    assert len(fake.events) == 1 and fake.lookups == []
    assert send(pipeline, env, attempt=3) == "applied"
    assert len(fake.events) == 1  # found by its own lookup: not sent twice
    assert fake.lookups == [(name, ident.event_id)]
