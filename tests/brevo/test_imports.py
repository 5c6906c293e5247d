"""New contacts in bulk (calendly_brevo/brevo/imports.py) against the fake Brevo over HTTP:
``POST /contacts/import`` per list set, read back with ``GET /contacts?modifiedSince``, and
whatever Brevo is not seen holding is left to the single upsert. Then ``resync`` after a dry
run, which creates the contacts Brevo was never sent that way: a second run sends nothing,
and a contact the import did not bring is created alone."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from calendly_brevo.brevo.bulk import ContactUpdate, update_contacts
from calendly_brevo.brevo.client import BrevoClient
from calendly_brevo.brevo.imports import Imported, import_contacts, importable
from calendly_brevo.brevo.shared_reads import recent_reads
from calendly_brevo.ledger.memory import MemoryLedger
from calendly_brevo.resync import selected
from calendly_brevo.resync_bulk import BulkResync
from tests import payloads
from tests.fakes.brevo import FakeBrevoServer, running_fake_brevo
from tests.worker.fakes import RecordingBrevo
from worker.pipeline import Pipeline

KEY = "xkeysib-imports-0123456789"
N = 60


@pytest.fixture
def fake() -> Iterator[FakeBrevoServer]:
    with running_fake_brevo(api_key=KEY, lists={10: "Discovery", 11: "Demo"}) as server:
        yield server


@pytest.fixture
def client(fake: FakeBrevoServer) -> Iterator[BrevoClient]:
    settings = payloads.settings(
        brevo={
            "api_key": KEY,
            "api_url": fake.base_url,
            "rate_limits": {
                f: {"rate": 1000, "burst": 1000} for f in ("contacts", "events", "other")
            },
        }
    )
    client = BrevoClient.from_settings(settings)
    yield client
    client.close()


def person(i: int, lists: tuple[int, ...] = (10,)) -> ContactUpdate:
    return ContactUpdate(f"p{i}@example.com", {"FIRSTNAME": f"P{i}"}, lists)


def calls(fake: FakeBrevoServer) -> Counter[str]:
    return Counter(f"{r.method} {r.path}" for r in fake.state.requests)


def test_new_contacts_are_imported_a_request_per_list_set_and_read_back(
    fake: FakeBrevoServer, client: BrevoClient
) -> None:
    people = [person(0), person(1), person(2, (11,)), person(3), person(4, (11,))]
    result = import_contacts(client, people, confirm_seconds=5)
    assert result.confirmed == [True] * 5
    assert calls(fake) == {"POST /v3/contacts/import": 2, "GET /v3/contacts": 1}
    assert result.requests == 3
    ada = fake.state.contact("p2@example.com")
    assert ada is not None and ada.list_ids == {11} and ada.attributes["FIRSTNAME"] == "P2"
    assert fake.snapshot()["violations"] == []


def test_imports_in_flight_together_share_their_reads(
    fake: FakeBrevoServer, client: BrevoClient
) -> None:
    second: list[Imported] = []

    def meanwhile(_pause: float) -> None:  # the first waits for its read; a second one reads
        if not second:
            second.append(
                import_contacts(client, [person(i) for i in (7, 8, 9)], confirm_seconds=5)
            )

    first = import_contacts(
        client, [person(i) for i in range(3)], confirm_seconds=5, sleep=meanwhile
    )
    assert first.confirmed == [True] * 3 and second[0].confirmed == [True] * 3
    # The second's read, made after Brevo took the first import, showed the first's rows too.
    assert calls(fake) == {"POST /v3/contacts/import": 2, "GET /v3/contacts": 1}
    assert first.requests == 1

    # A read made before Brevo took an import does not stand in for one after it, even where
    # it listed the same contacts (here the second's, imported again).
    third = import_contacts(client, [person(i) for i in (7, 8, 9)], confirm_seconds=5)
    assert third.confirmed == [True] * 3
    assert calls(fake)["GET /v3/contacts"] == 2


def test_an_import_waits_for_a_read_still_waiting_for_its_token_instead_of_queueing_its_own(
    fake: FakeBrevoServer, client: BrevoClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy contacts family: the first import's read waits for its token. A second import
    taken meanwhile waits for that read (its token lets it go after the second import, so it
    lists the second's rows too) instead of spending a token on a read of its own."""
    token = threading.Event()
    real_holding = client.holding

    @contextmanager
    def busy(family: str) -> Iterator[None]:
        token.wait(10)
        with real_holding(family):
            yield

    monkeypatch.setattr(client, "holding", busy)
    first: list[Imported] = []
    waiting = threading.Thread(
        target=lambda: first.append(
            import_contacts(client, [person(i) for i in range(3)], confirm_seconds=5)
        )
    )
    waiting.start()
    shared = recent_reads(client)
    deadline = time.monotonic() + 10
    while not shared.wait_for_read(datetime.now(UTC), timeout=0) and time.monotonic() < deadline:
        time.sleep(0.01)  # until the first one's read waits for its token
    # The second import's pause ends; its token comes to the first read 0.3 s later.
    second = import_contacts(
        client,
        [person(i) for i in (7, 8, 9)],
        confirm_seconds=5,
        sleep=lambda _pause: threading.Timer(0.3, token.set).start(),
    )
    waiting.join(10)
    assert first[0].confirmed == [True] * 3 and second.confirmed == [True] * 3
    assert calls(fake) == {"POST /v3/contacts/import": 2, "GET /v3/contacts": 1}
    assert second.requests == 1  # its import, no read of its own

    # A read waiting for its token lists only what changed since its own start: an import
    # whose rows may predate that does not wait for it.
    later = datetime.now(UTC) + timedelta(minutes=1)
    with shared.reading(later):
        assert not shared.wait_for_read(datetime.now(UTC), timeout=0)
        assert shared.wait_for_read(later, timeout=0)


def test_an_import_brevo_applies_late_is_read_again_until_seen(
    fake: FakeBrevoServer, client: BrevoClient
) -> None:
    fake.call(setattr, fake.state, "import_delay_seconds", 0.8)
    result = import_contacts(client, [person(i) for i in range(4)], confirm_seconds=10)
    assert result.confirmed == [True] * 4
    assert calls(fake)["GET /v3/contacts"] >= 2  # not there at the first read


def test_a_row_brevo_skips_or_an_import_that_fails_is_left_to_the_single_upsert(
    fake: FakeBrevoServer, client: BrevoClient
) -> None:
    fake.call(fake.state.import_skips.add, "p1@example.com")
    pauses: list[float] = []
    result = import_contacts(
        client, [person(0), person(1), person(2)], confirm_seconds=600, sleep=pauses.append
    )
    assert result.confirmed == [True, False, True]
    # The skipped row does not hold the others for the whole 600 s: the import showed its
    # other rows, then two reads brought nothing more.
    assert len(pauses) == 3

    fake.inject("5xx", path="^/v3/contacts/import$", count=1)
    again = import_contacts(client, [person(5), person(6)], confirm_seconds=1.5)
    assert again.confirmed == [False, False]
    assert again.requests == 1  # nothing to read back


def test_only_contacts_with_lists_fit_an_import() -> None:
    assert importable(person(0))
    assert importable(ContactUpdate("a@example.com", {}, (10,), (11,)))
    assert not importable(ContactUpdate("a@example.com", {"FIRSTNAME": "A"}))


def test_a_row_with_lists_to_leave_is_confirmed_only_for_a_contact_the_import_created(
    fake: FakeBrevoServer, client: BrevoClient
) -> None:
    """An import cannot unlink: a contact Brevo held before (on list 11 by hand) is left to
    the single upsert, which takes it off; one the import created is on no other list."""
    assert client.upsert_contact("old@example.com", {}, list_ids=[11]) is not None
    time.sleep(0.05)  # the import starts after the hand-made contact's creation
    leaving = [
        ContactUpdate("old@example.com", {"FIRSTNAME": "Old"}, (10,), (11,)),
        ContactUpdate("new@example.com", {"FIRSTNAME": "New"}, (10,), (11,)),
        person(1),
    ]
    # no margin: the hand-made contact predates the read's start
    result = import_contacts(client, leaving, confirm_seconds=5, clock_margin=timedelta(0))
    assert result.confirmed == [False, True, True]


# -- resync after a dry run ----------------------------------------------------------------------


def dry_run_bookings() -> MemoryLedger:
    """``N`` bookings processed while Brevo ran dry: state stored, nothing pushed."""
    ledger = MemoryLedger()
    pipe = Pipeline(payloads.settings(), ledger, RecordingBrevo(dry_run=True))
    for i in range(N):
        doc = payloads.invitee_created(
            email=f"p{i:02d}@example.com", invitee_uri=payloads.invitee_uri(f"EV{i}", f"IN{i}")
        )
        assert pipe.process(payloads.body(doc).decode(), time.time()).status == "dry_run"
    return ledger


def resync(ledger: MemoryLedger, client: BrevoClient) -> BulkResync:
    return BulkResync(
        ledger,
        payloads.settings().rules,
        client,
        bulk=partial(update_contacts, client),
        page=10,
        imports=partial(import_contacts, client, confirm_seconds=3),
        import_page=25,
    )


def test_contacts_never_pushed_are_imported_and_a_second_run_sends_nothing(
    fake: FakeBrevoServer, client: BrevoClient
) -> None:
    ledger = dry_run_bookings()
    summary = resync(ledger, client).run(selected(ledger, None))
    assert (summary.checked, summary.changed, summary.failures) == (N, N, 0)
    made = calls(fake)
    assert made["POST /v3/contacts/import"] == 3  # 25 + 25 + 10 instead of 60 creates
    assert made["POST /v3/contacts"] == 0
    assert summary.calls == sum(made.values())
    held = {c.email: c for c in fake.state.contacts.values()}
    assert len(held) == N
    assert all(c.list_ids == {10} for c in held.values())
    assert held["p07@example.com"].attributes["FIRSTNAME"] == "John"
    assert fake.snapshot()["violations"] == []
    again = resync(ledger, client).run(selected(ledger, None))
    assert (again.changed, again.calls) == (0, 0)


def test_a_contact_the_import_did_not_bring_is_created_alone(
    fake: FakeBrevoServer, client: BrevoClient
) -> None:
    ledger = dry_run_bookings()
    fake.call(fake.state.import_skips.add, "p13@example.com")
    summary = resync(ledger, client).run(selected(ledger, None))
    assert summary.failures == 0
    assert calls(fake)["POST /v3/contacts"] == 1
    assert len(fake.state.contacts) == N
    again = resync(ledger, client).run(selected(ledger, None))
    assert again.changed == 0
