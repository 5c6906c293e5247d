"""``prune`` strips invitee PII past retention where a newer record makes it redundant."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from calendly_brevo.db.models import Invitee
from calendly_brevo.lifecycle import prune
from calendly_brevo.projection import project_contact
from calendly_brevo.state import InviteeRecord
from tests import payloads
from tests.worker.test_pipeline import make_pipeline

EMAIL = "anna@example.com"


def _records(services: object) -> dict[str, dict[str, object]]:
    with services.sessions() as s:  # type: ignore[attr-defined]
        return {i.invitee_uri: dict(i.data) for i in s.scalars(select(Invitee)).all()}


def test_prune_strips_superseded_names_phones_and_answers_but_not_the_projection(
    tmp_path: Path,
) -> None:
    pipeline, _brevo, services = make_pipeline(tmp_path)
    old_uri = payloads.invitee_uri("E1", "I1")
    new_uri = payloads.invitee_uri("E2", "I2")
    for uri, created, answer in (
        (old_uri, "2026-01-01T10:00:00.000000Z", "old answer"),
        (new_uri, "2026-02-01T10:00:00.000000Z", "new answer"),
    ):
        doc = payloads.invitee_created(
            email=EMAIL,
            invitee_uri=uri,
            created_at=created,
            name="Anna Jansen",
            text_reminder_number="+31612345678",
            questions=(("Company?", answer),),
        )
        pipeline.process(payloads.body(doc).decode(), 1.0)
    settings = services.settings
    before = project_contact(
        EMAIL, [InviteeRecord.from_dict(d) for d in _records(services).values()], [], settings.rules
    )

    result = prune(services.sessions, timedelta(0))
    assert result.invitees == 1
    after_rows = _records(services)
    old, new = after_rows[old_uri], after_rows[new_uri]
    assert old["name"] is None and old["text_reminder_number"] is None
    assert old["questions_and_answers"] == [] and old["email"] == EMAIL
    assert new["name"] == "Anna Jansen" and new["text_reminder_number"] == "+31612345678"
    after = project_contact(
        EMAIL, [InviteeRecord.from_dict(d) for d in after_rows.values()], [], settings.rules
    )
    assert after == before
    assert prune(services.sessions, timedelta(0)).invitees == 0  # nothing left to strip
    services.close()


def test_prune_within_retention_keeps_every_invitee_field(tmp_path: Path) -> None:
    pipeline, _brevo, services = make_pipeline(tmp_path)
    for n in (1, 2):
        doc = payloads.invitee_created(
            email=EMAIL,
            invitee_uri=payloads.invitee_uri(f"E{n}", f"I{n}"),
            created_at=f"2026-0{n}-01T10:00:00.000000Z",
        )
        pipeline.process(payloads.body(doc).decode(), 1.0)
    before = _records(services)
    assert prune(services.sessions, timedelta(days=30)).invitees == 0
    assert _records(services) == before
    services.close()


def test_prune_drops_payloads_of_unfinished_events_and_open_dead_letters_past_retention(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    from calendly_brevo.db.models import DeadLetter, ProcessedEvent
    from calendly_brevo.ledger import DeadLetterFilter, Failure
    from calendly_brevo.replay import replay

    _pipeline, _brevo, services = make_pipeline(tmp_path)
    long_ago = datetime.now(UTC) - timedelta(days=90)
    body = payloads.body(payloads.invitee_created(email=EMAIL, name="Anna Jansen")).decode()
    with services.sessions.begin() as s:
        for event_id, status in (("ev-failed", "failed"), ("ev-dead", "dead")):
            s.add(
                ProcessedEvent(
                    event_id=event_id,
                    event_name="invitee.created",
                    status=status,
                    email=EMAIL,
                    payload=body,
                    brevo_calls=[{"method": "POST", "route": "/contacts", "status": "502"}],
                    created_at=long_ago,
                    updated_at=long_ago,
                )
            )
        # An applied event whose payload and email an earlier prune already took.
        s.add(
            ProcessedEvent(
                event_id="ev-applied",
                event_name="invitee.created",
                status="applied",
                brevo_calls=[{"method": "POST", "route": "/events", "status": "204"}],
                created_at=long_ago,
                updated_at=long_ago,
            )
        )
    services.ledger.dead_letter(
        Failure(
            event_id="ev-dead",
            event_name="invitee.created",
            reason="brevo_rejected",
            error="400",
            attempts=1,
            payload=body,
            source="webhook",
            received_at=None,
        )
    )
    with services.sessions.begin() as s:
        s.query(DeadLetter).update({"created_at": long_ago})
        s.query(ProcessedEvent).update({"updated_at": long_ago})

    result = prune(services.sessions, timedelta(days=30))
    assert result.payloads == 3 and result.open_dead_letter_payloads == 1
    with services.sessions() as s:
        events = s.scalars(select(ProcessedEvent)).all()
        (dl,) = s.scalars(select(DeadLetter)).all()
    assert {(e.event_id, e.payload, e.email, e.brevo_calls) for e in events} == {
        ("ev-failed", None, None, None),  # the Brevo call log goes with the PII
        ("ev-dead", None, None, None),
        ("ev-applied", None, None, None),
    }
    assert dl.payload == "" and dl.reason == "brevo_rejected"  # still listed, PII gone

    class Recorder:
        sent: list[str] = []

        def enqueue(self, body: str, *, received_at: float, source: str) -> str:
            self.sent.append(body)
            return str(len(self.sent))

        def depth(self) -> dict[str, int]:
            return {"ready": len(self.sent)}

    assert replay(services.ledger, Recorder(), DeadLetterFilter()) == []  # nothing left to replay
    assert Recorder.sent == []
    services.close()
