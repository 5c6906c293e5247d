"""The in-doubt lookup budget (issue 18, point 3): lookups (``GET /events``) get
``brevo.lookup_share`` of Brevo's 100-per-hour "other" family, and when that share is spent the
documented rule decides at once: send again the events listed in
``brevo.resend_in_doubt_events``, dead-letter the rest as ``in_doubt``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from calendly_brevo.config import load_settings
from calendly_brevo.errors import BrevoTransientError, ConfigError
from calendly_brevo.ledger import DeadLetterFilter
from calendly_brevo.ratelimit.bucket import FAMILIES, MemoryBackend, TokenBucket
from tests import payloads
from tests.worker.test_pipeline import memory_pipeline, send
from worker.runtime import LOOKUPS, BucketLookupBudget


@dataclass
class Budget:
    left: int

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def in_doubt_event(budget: Budget, **brevo: Any) -> tuple[Any, Any, dict[str, Any]]:
    """A pipeline whose first attempt lost Brevo's answer to ``POST /events``."""
    pipeline, fake = memory_pipeline(brevo=brevo)
    pipeline.events.lookups = budget
    env = payloads.invitee_created(email="ada@example.com")
    fake.lost_answers = 1
    with pytest.raises(BrevoTransientError):
        send(pipeline, env)
    assert len(fake.events) == 1
    return pipeline, fake, env


def test_an_in_doubt_event_is_looked_up_while_the_share_lasts() -> None:
    pipeline, fake, env = in_doubt_event(Budget(1))
    assert send(pipeline, env, attempt=2) == "applied"
    assert len(fake.lookups) == 1 and len(fake.events) == 1  # found: not sent twice


def test_with_the_share_spent_an_event_not_listed_is_dead_lettered_in_doubt() -> None:
    pipeline, fake, env = in_doubt_event(Budget(0))
    assert send(pipeline, env, attempt=2) == "dead_lettered"
    assert fake.lookups == [] and len(fake.events) == 1  # neither looked up nor resent
    [row] = pipeline.ledger.dead_letters(DeadLetterFilter())
    assert row.reason == "in_doubt"
    assert "brevo.lookup_share" in row.error and "dlq replay" in row.error
    # Once the share refills, a replay looks it up and finds it: still sent once.
    pipeline.events.lookups = Budget(1)
    assert send(pipeline, env, attempt=1) == "applied"
    assert len(fake.lookups) == 1 and len(fake.events) == 1


def test_with_the_share_spent_an_event_whose_automations_are_idempotent_is_sent_again() -> None:
    pipeline, fake, env = in_doubt_event(
        Budget(0), resend_in_doubt_events=["calendly_invitee_created"]
    )
    assert send(pipeline, env, attempt=2) == "applied"
    assert fake.lookups == [] and len(fake.events) == 2  # at least once, as configured


def test_the_lookup_share_is_a_bucket_of_its_own_beside_the_other_family() -> None:
    settings = load_settings(None, env={"CALENDLY_WEBHOOK_SIGNING_KEY": "x" * 32})
    share = settings.brevo.lookup_bucket()
    other = settings.brevo.bucket("other")
    assert share.rate == pytest.approx(other.rate * 0.5)
    assert share.burst == 2
    buckets = {f: settings.brevo.bucket(f) for f in FAMILIES} | {LOOKUPS: share}
    budget = BucketLookupBudget(TokenBucket(MemoryBackend(), buckets))
    assert [budget.take() for _ in range(3)] == [True, True, False]


def test_an_unknown_event_name_in_resend_in_doubt_events_is_refused_naming_the_key(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("brevo:\n  resend_in_doubt_events: [calendly_invitee_booked]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={"CALENDLY_WEBHOOK_SIGNING_KEY": "x" * 32})
    assert "brevo" in caught.value.path and "resend_in_doubt_events" in str(caught.value)
