"""The projection is what Brevo ends with (DESIGN invariant 7), as a property: for any
interleaving of events, config changes and dry runs, ``resync`` after the last change leaves
Brevo as a fresh connector that received every event under the final config (plus, for a
contact none of whose events that config pushes, the resync that brings it in).

On the in-memory ledger and the recording Brevo port (attributes merged, lists added and
unlinked as Brevo does). Attributes are compared on the keys the fresh connector sets: a resync
sets attributes and never clears one an earlier mapping produced."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from calendly_brevo.config import Settings
from calendly_brevo.events import event_from_dict
from calendly_brevo.ledger.memory import MemoryLedger
from calendly_brevo.resync import Resync, selected
from tests import payloads
from tests.worker.fakes import RecordingBrevo
from worker.pipeline import Pipeline

EMAILS = ("ada@example.com", "bob@example.com")
DEMO = payloads.DEMO_EVENT_TYPE_URI


def _event(kind: str, email: str, booking: int) -> dict[str, Any]:
    """One of a few bookings per email; booking 3 is a demo (an invitee keeps its type)."""
    demo = booking == 3
    uri = payloads.invitee_uri(f"E{booking}", f"I{booking}-{email[0]}")
    types: dict[str, Any] = {"event_type_uri": DEMO, "event_type_name": "Demo"} if demo else {}
    start = f"2030-01-{10 + booking:02d}T15:00:00.000000Z"
    if kind == "created":
        return payloads.invitee_created(email=email, invitee_uri=uri, start_time=start, **types)
    if kind == "canceled":
        return payloads.invitee_canceled(email=email, invitee_uri=uri, start_time=start, **types)
    return payloads.no_show_created(
        email=email,
        invitee_uri=uri,
        no_show_uri=payloads.no_show_uri(f"NS{booking}{email[0]}"),
        start_time=start,
        **types,
    )


events = st.builds(
    _event,
    st.sampled_from(["created", "created", "canceled", "no_show"]),
    st.sampled_from(EMAILS),
    st.integers(1, 3),
)

configs = st.fixed_dictionaries(
    {
        "list": st.sampled_from([10, 12]),
        "cancellations": st.booleans(),
        "exclude_demo": st.booleans(),
        "move_on_cancel": st.booleans(),
        "enabled": st.sampled_from([True, True, False]),
        "dry_run": st.booleans(),
    }
)


def _settings(c: dict[str, Any]) -> Settings:
    return payloads.settings(
        connectors={
            "calendly": {
                "enabled": c["enabled"],
                "event_mapping": {"discovery_call": {"list_id": c["list"]}},
                "sync": {
                    "cancellations": c["cancellations"],
                    "event_types": {"exclude": ["demo"] if c["exclude_demo"] else []},
                },
            }
        },
        brevo={"list_moves": {"on_cancel": {"add": [20] if c["move_on_cancel"] else []}}},
    )


steps = st.lists(
    st.one_of(events.map(lambda e: ("event", e)), configs.map(lambda c: ("config", c)))
)


def _deliver(pipeline: Pipeline, env: dict[str, Any]) -> None:
    pipeline.process(payloads.body(env).decode(), 1.0)


def _state(brevo: RecordingBrevo, keys_from: RecordingBrevo) -> dict[str, Any]:
    return {
        email: (
            {k: brevo.contacts.get(email, {}).get(k) for k in keys_from.contacts.get(email, {})},
            brevo.lists.get(email, set()),
        )
        for email in EMAILS
    }


@settings(max_examples=150, deadline=None)
@given(steps=steps, final=configs)
def test_resync_after_any_interleaving_gives_what_a_fresh_connector_gives(
    steps: list[tuple[str, Any]], final: dict[str, Any]
) -> None:
    final = {**final, "dry_run": False, "enabled": True}  # a connector that pushes
    ledger, brevo = MemoryLedger(), RecordingBrevo()
    config: dict[str, Any] = {"list": 10, "cancellations": True, "exclude_demo": False}
    config |= {"move_on_cancel": False, "enabled": True, "dry_run": False}
    received: list[dict[str, Any]] = []
    for kind, value in steps:
        if kind == "config":
            config = value
            continue
        brevo.dry_run = config["dry_run"]
        _deliver(Pipeline(_settings(config), ledger, brevo), value)
        received.append(value)
    brevo.dry_run = False
    Resync(ledger, _settings(final).rules, brevo).run(selected(ledger, None))

    fresh, fresh_ledger = RecordingBrevo(), MemoryLedger()
    fresh_pipeline = Pipeline(_settings(final), fresh_ledger, fresh)
    for env in received:
        _deliver(fresh_pipeline, env)
    # The fresh connector pushes on each event its final switches let through; an event they
    # suppress is stored but not pushed, even when it changes the projection (a cancellation
    # of a booking never seen created, with cancellations off, is an active booking there).
    # So its own resync may push exactly the contacts that had a suppressed event, no other.
    suppressed = set()
    for env in received:
        ident = event_from_dict(env).identity
        row = fresh_ledger.event(ident.event_id)
        if row is not None and row.status == "suppressed" and ident.email:
            suppressed.add(ident.email)
    fixup = Resync(fresh_ledger, _settings(final).rules, fresh).run(selected(fresh_ledger, None))
    assert {c["email"] for c in fixup.contacts} <= suppressed
    assert _state(brevo, fresh) == _state(fresh, fresh)
    again = Resync(ledger, _settings(final).rules, brevo).run(selected(ledger, None))
    assert again.calls == 0
