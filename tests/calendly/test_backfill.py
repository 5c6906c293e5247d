from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from calendly_brevo.bootstrap import Services
from calendly_brevo.calendly.backfill import (
    Resume,
    WalkHooks,
    WalkStats,
    Window,
    backfill,
    envelope_event_id,
    envelopes_for,
    reconcile,
)
from calendly_brevo.calendly.client import CalendlyClient
from calendly_brevo.db.models import ProcessedEvent
from calendly_brevo.events import parse_envelope, read_event
from cli.commands.backfill import backfill as backfill_command
from cli.commands.backfill import reconcile as reconcile_command
from tests.calendly.conftest import queued_envelopes
from tests.fakes.calendly import FakeCalendlyServer

SINCE = datetime(2024, 1, 1, tzinfo=UTC)


def expected(cal: FakeCalendlyServer) -> Counter[tuple[str, str]]:
    want: Counter[tuple[str, str]] = Counter()
    for inv in cal.state.all_invitees():
        want["invitee.created", inv["uri"]] += 1
        if inv["status"] == "canceled":
            want["invitee.canceled", inv["uri"]] += 1
        if inv["no_show"]:
            want["invitee_no_show.created", inv["uri"]] += 1
    return want


def got(services: Services) -> Counter[tuple[str, str]]:
    return Counter(
        (e["event"], e["payload"]["uri"]) for _s, e in queued_envelopes(services.settings)
    )


def run(
    services: Services,
    client: CalendlyClient,
    cal: FakeCalendlyServer,
    *,
    on_page: Callable[[int, WalkStats], None] | None = None,
    on_progress: Callable[[WalkStats], None] | None = None,
    **resume: Any,
) -> Any:
    window = Window(since=SINCE, organization=cal.state.org)
    return backfill(
        client,
        services.enqueuer,
        services.sessions,
        window,
        created_by=cal.state.user["uri"],
        resume=Resume(**resume),
        hooks=WalkHooks(page_size=25, on_page=on_page, on_progress=on_progress),
    )


def test_envelopes_rebuild_the_webhooks_of_a_canceled_rescheduled_no_show_invitee(
    cal: FakeCalendlyServer,
) -> None:
    counts = cal.state.generate(30)
    assert counts["rescheduled"] and counts["no_shows"]
    old = next(i for i in cal.state.all_invitees() if i["rescheduled"])
    event = cal.state.event_by_uri(old["event"])
    assert event is not None
    created, canceled = envelopes_for(old, event, created_by="https://api.calendly.com/users/U")
    assert created["event"] == "invitee.created" and canceled["event"] == "invitee.canceled"
    assert created["payload"]["status"] == "active" and "cancellation" not in created["payload"]
    assert created["payload"]["scheduled_event"]["status"] == "active"
    assert canceled["payload"]["rescheduled"] is True and canceled["payload"]["new_invitee"]
    assert canceled["created_at"] == old["cancellation"]["created_at"]
    new = next(i for i in cal.state.all_invitees() if i["uri"] == old["new_invitee"])
    new_event = cal.state.event_by_uri(new["event"])
    assert new_event is not None
    (rebooked,) = envelopes_for(new, new_event, created_by="u")
    assert rebooked["payload"]["old_invitee"] == old["uri"]  # the worker sees a reschedule
    no_show = next(i for i in cal.state.all_invitees() if i["no_show"])
    ns_event = cal.state.event_by_uri(no_show["event"])
    assert ns_event is not None
    names = [e["event"] for e in envelopes_for(no_show, ns_event, created_by="u")]
    assert names == ["invitee.created", "invitee_no_show.created"]


def test_synthesized_envelopes_get_the_same_event_ids_as_the_worker_derives(
    cal: FakeCalendlyServer,
) -> None:
    cal.state.generate(30)
    for inv in cal.state.all_invitees():
        event = cal.state.event_by_uri(inv["event"])
        assert event is not None
        for envelope in envelopes_for(inv, event, created_by="u"):
            import json

            worker_view = read_event(parse_envelope(json.dumps(envelope))).identity
            assert worker_view.event_id == envelope_event_id(envelope)


def test_backfill_of_250_invitees_enqueues_every_webhook_once(
    cal: FakeCalendlyServer, services: Services, client: CalendlyClient
) -> None:
    counts = cal.state.generate(180)
    assert counts["invitees"] == 252
    stats = run(services, client, cal)
    assert got(services) == expected(cal)
    assert stats.invitees == 252 and stats.events == 180
    assert stats.enqueued == sum(expected(cal).values())
    assert {s for s, _e in queued_envelopes(services.settings)} == {"backfill"}
    names = Counter(e for e, _u in got(services).elements())
    assert names["invitee.canceled"] and names["invitee_no_show.created"]
    sources = queued_envelopes(services.settings)
    assert all(e["created_by"] == cal.state.user["uri"] for _s, e in sources)


def test_a_crash_after_page_two_resumes_without_repeating_finished_pages(
    cal: FakeCalendlyServer, services: Services, client: CalendlyClient
) -> None:
    cal.state.generate(180)  # 8 pages of 25

    def crash(page: int, _stats: Any) -> None:
        if page == 2:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run(services, client, cal, on_page=crash)
    first_run = len(queued_envelopes(services.settings))
    calls_before = len([r for r in cal.state.requests if r[1] == "/scheduled_events"])
    assert calls_before == 2

    stats = run(services, client, cal)
    assert stats.resumed
    assert got(services) == expected(cal)  # everything exactly once across both runs
    assert len(queued_envelopes(services.settings)) > first_run
    lists = [q for _m, p, q in cal.state.requests if p == "/scheduled_events"][calls_before:]
    assert len(lists) == 6 and lists[0]["page_token"]  # pages 3..8 only
    assert stats.pages == 8 and stats.events == 180

    again = run(services, client, cal, restart=True)  # --restart walks everything again
    assert again.events == 180 and not again.resumed


def test_a_crash_inside_a_page_resumes_after_the_last_finished_event(
    cal: FakeCalendlyServer, services: Services, client: CalendlyClient
) -> None:
    cal.state.generate(30, group_every=0, cancel_every=0, reschedule_every=0, no_show_every=0)
    seen = {"n": 0}

    def crash(stats: Any) -> None:
        seen["n"] += 1
        if seen["n"] == 10:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run(services, client, cal, on_progress=crash)
    run(services, client, cal)
    assert got(services) == expected(cal)
    assert len(queued_envelopes(services.settings)) == 30


def test_reconcile_enqueues_only_what_was_not_processed(
    cal: FakeCalendlyServer, services: Services, client: CalendlyClient
) -> None:
    now = datetime.now(UTC)
    cal.state.generate(20, start=now - timedelta(hours=30), step=timedelta(hours=5), now=now)
    cal.state.generate(3, start=now - timedelta(days=10), now=now)  # before the window
    window = Window(since=now - timedelta(hours=48), organization=cal.state.org)
    all_envelopes = []
    for inv in cal.state.all_invitees():
        event = cal.state.event_by_uri(inv["event"])
        assert event is not None
        if event["start_time"] >= window.key()["since"]:
            all_envelopes += envelopes_for(inv, event, created_by="u")
    done = all_envelopes[::2]
    with services.sessions.begin() as session:
        for env in done:
            session.add(
                ProcessedEvent(
                    event_id=envelope_event_id(env),
                    event_name=env["event"],
                    status="applied",
                    source="webhook",
                    attempts=1,
                    effects={},
                    created_at=now,
                    updated_at=now,
                )
            )
    stats = reconcile(
        client,
        services.enqueuer,
        services.ledger,
        window=timedelta(hours=48),
        created_by="u",
        organization=cal.state.org,
        hooks=WalkHooks(clock=now.timestamp),
    )
    queued = queued_envelopes(services.settings)
    assert {envelope_event_id(e) for _s, e in queued} == {
        envelope_event_id(e) for e in all_envelopes[1::2]
    }
    assert {s for s, _e in queued} == {"reconcile"}
    assert stats.skipped == len(done) and stats.enqueued == len(all_envelopes) - len(done)


def test_the_backfill_and_reconcile_commands_print_their_counts(
    cal: FakeCalendlyServer, services: Services
) -> None:
    cal.state.generate(12)
    runner = CliRunner()
    result = runner.invoke(
        backfill_command, ["--since", "2024-01-01"], obj=services, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "backfill done: 12 events" in result.output
    assert got(services) == expected(cal)
    again = runner.invoke(reconcile_command, ["--window", "9999d"], obj=services)
    assert again.exit_code == 0, again.output
    assert "reconcile done: 12 events" in again.output
