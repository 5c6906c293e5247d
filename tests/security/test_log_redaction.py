"""PII in logs and dead letters: IDN and quoted emails, names and phone numbers are masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from calendly_brevo.db.engine import make_engine, make_sessionmaker
from calendly_brevo.db.migrate import upgrade
from calendly_brevo.ledger import DeadLetterFilter, Failure, open_ledger
from calendly_brevo.logs import Redactor
from calendly_brevo.pii import mask_email


@pytest.mark.parametrize(
    ("email", "domain"),
    [
        ("jan@bücher.de", "bücher.de"),
        ("анна@пример.рф", "пример.рф"),
        ('"jan jansen"@example.com', "example.com"),
        ('"a\\"b"@example.org', "example.org"),
        ("o'brien+tag@xn--bcher-kva.de", "xn--bcher-kva.de"),
    ],
)
def test_unusual_emails_are_masked_in_any_log_text(email: str, domain: str) -> None:
    masked = mask_email(f"contact {email} failed")
    assert email not in masked and f"***@{domain}" in masked


def test_names_and_phone_numbers_are_masked_outside_debug() -> None:
    r = Redactor(mask_pii=True)
    out = r(
        None,
        "info",
        {
            "event": "upsert for +31 6 1234 5678",
            "name": "Jan Jansen",
            "attributes": {"FIRSTNAME": "Jan", "LASTNAME": "Jansen", "SMS": "+31612345678"},
            "phone": "0612345678",
        },
    )
    text = repr(out)
    for value in ("Jansen", "'Jan'", "12345678", "0612345678", "1234 5678"):
        assert value not in text
    assert out["name"] == "J***" and out["phone"] == "[PII]"


def test_debug_keeps_names_and_phones() -> None:
    out = Redactor(mask_pii=False)(None, "info", {"name": "Jan Jansen", "event": "+31612345678"})
    assert out == {"name": "Jan Jansen", "event": "+31612345678"}


def test_a_dead_letter_error_does_not_carry_the_raw_input_values(tmp_path: Path) -> None:
    class Invitee(BaseModel):
        email: int

    with pytest.raises(ValidationError) as err:
        Invitee.model_validate({"email": "Jan Jansen <jan@bücher.de> +31612345678"})
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    ledger = open_ledger(engine, make_sessionmaker(engine))
    ledger.dead_letter(
        Failure(
            event_id=None,
            event_name="invitee.created",
            reason="unmappable",
            error=f"{err.value}; phone +31 6 1234 5678 for jan@bücher.de",
            attempts=1,
            payload="{}",
            source="webhook",
            received_at=None,
        )
    )
    (dl,) = ledger.dead_letters(DeadLetterFilter())
    engine.dispose()
    assert "Jan Jansen" not in dl.error and "jan@bücher.de" not in dl.error
    assert "1234 5678" not in dl.error and "612345678" not in dl.error
    assert "email" in dl.error and "input_value=[hidden]" in dl.error
