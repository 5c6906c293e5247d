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
        EMAIL, [InviteeRecord.from_dict(d) for d in _records(services).values()], [], settings
    )

    result = prune(services.sessions, timedelta(0))
    assert result.invitees == 1
    after_rows = _records(services)
    old, new = after_rows[old_uri], after_rows[new_uri]
    assert old["name"] is None and old["text_reminder_number"] is None
    assert old["questions_and_answers"] == [] and old["email"] == EMAIL
    assert new["name"] == "Anna Jansen" and new["text_reminder_number"] == "+31612345678"
    after = project_contact(
        EMAIL, [InviteeRecord.from_dict(d) for d in after_rows.values()], [], settings
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
