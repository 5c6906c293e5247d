"""The :class:`Ledger` protocol: everything the connector remembers about events and contacts.

One implementation per module, as Dramatiq gives each broker its own: :mod:`.postgres`
(production, the measured plain-SQL hot path), :mod:`.sqlite` (the embedded mode) and
:mod:`.memory` (tests and the pipeline's rules). ``tests/ledger/test_contract.py`` runs one
suite against all three. What a ledger keeps:

- **claims and effects**: a claim per logical event id. ``applied``, ``dry_run`` (its calls
  were logged, not sent), ``suppressed`` (stored, not pushed: a sync switch, the event-type
  filter or a tombstone; the reason is in ``last_error``) and ``ignored`` are done (:data:`DONE`):
  a later claim of the same id is a duplicate. Done is about the *event*; what Brevo holds is
  brought to the stored state by ``resync``, not by processing the event again. Any other status
  (``processing`` from a worker that died, ``failed``, ``dead`` after a fix and a replay) is
  claimed and processed again. ``effects`` remembers which Brevo calls already succeeded, so a
  retry after a partial success repeats none of them. A claim also keeps the label of the
  signing key that verified the event (``Arrival.signature_key``) and the log of the Brevo calls
  made for it (``calls=`` on the writes below: the whole log, every attempt's, see
  :mod:`calendly_brevo.brevo_calls`), both for ``trace``. All work on one contact runs under
  :meth:`Ledger.contact_lock`; concurrent duplicates of one event serialise on it and apply once.
- **invitee state**: each invitee record and no-show mark, merged (a join: any order of
  arrival gives the same result), and read back per email for the projection.
- **dead letters**: events that failed for good, with their reason; listed, replayed, purged.
- **tombstones**: the hashes of a forgotten person's email and invitee URIs (no PII), so that a
  redelivery or backfill of their past events can be recognised and not re-create them.
- **last pushed projections**: per contact, what the connector last told Brevo.

Weak spot, stated plainly: the contact lock of the SQLite and in-memory ledgers is process-local,
which is right for the one-process embedded mode and for tests, and wrong for anything else.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from calendly_brevo.logs import get_logger
from calendly_brevo.state import InviteeRecord, NoShowMark

#: Claim statuses that mean "already processed": a claim of the same event id is a duplicate.
DONE = frozenset({"applied", "dry_run", "suppressed", "ignored"})
#: Done, or dead-lettered: a reconcile does not enqueue these again (``dlq replay`` does).
SETTLED = DONE | {"dead"}
#: Done statuses whose custom event may have been held back (a dry run, a switch, the filter).
UNSENT_STATUSES = ("applied", "dry_run", "suppressed")
#: Dead-letter error texts are cut to this length.
ERROR_LIMIT = 4000

#: What the claim merges into the contact's state: the event's invitee record and no-show mark.
State = tuple[InviteeRecord | None, NoShowMark | None]

log = get_logger("calendly_brevo.worker")


def now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """``value`` with its time zone: SQLite gives back naive UTC datetimes."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def lock_key(value: str) -> int:
    """A signed 64-bit lock key for ``value`` (a Postgres advisory-lock key)."""
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big", signed=True)


def tombstone_key(kind: str, value: str) -> str:
    """What a tombstone stores for an email or an invitee URI: a hash, never the value."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def tombstone_keys(*, email: str | None = None, invitee_uri: str | None = None) -> list[str]:
    """The tombstone keys that would name a person by ``email`` or an ``invitee_uri``."""
    keys = [tombstone_key("email", email)] if email else []
    return keys + ([tombstone_key("invitee", invitee_uri)] if invitee_uri else [])


@dataclass
class Claim:
    event_id: str
    duplicate: bool
    attempts: int
    effects: dict[str, Any] = field(default_factory=dict)
    #: With ``state=``: the merged invitee record and every record and mark of the contact,
    #: read in the claim's own transaction (one commit instead of four per event).
    record: InviteeRecord | None = None
    records: list[InviteeRecord] | None = None
    marks: list[NoShowMark] | None = None
    #: The attempt before this one never finished (its worker died, or lost the database):
    #: it may have done any of its Brevo calls.
    interrupted: bool = False
    #: The Brevo calls the earlier attempts stored (:mod:`calendly_brevo.brevo_calls`).
    calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Arrival:
    """What a claim stores about the event when it first sees it."""

    event_id: str
    event_name: str
    invitee_uri: str | None
    email: str | None
    payload: str
    source: str
    received_at: datetime | None
    #: The label of the webhook signing key that verified it (never the key itself:
    #: :func:`calendly_brevo.key_labels.key_label`); ``None`` for a backfill or a replay.
    signature_key: str | None = None

    def failed(self, reason: str, error: str, attempts: int) -> Failure:
        return Failure(
            self.event_id,
            self.event_name,
            reason,
            error,
            attempts,
            self.payload,
            self.source,
            self.received_at,
        )


@dataclass(frozen=True)
class Failure:
    """A dead letter to store: the event (no id or name when it could not be parsed) and why."""

    event_id: str | None
    event_name: str | None
    reason: str
    error: str
    attempts: int
    payload: str
    source: str
    received_at: datetime | None


@dataclass(frozen=True)
class EventRow:
    """An event's claim as stored (for ``status``, tests and operators)."""

    event_id: str
    status: str
    attempts: int
    effects: dict[str, Any]
    payload: str | None
    last_error: str | None
    applied_at: datetime | None
    event_name: str | None = None
    signature_key: str | None = None
    #: The Brevo calls made for it, oldest first (:mod:`calendly_brevo.brevo_calls`).
    calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class DeadLetter(Failure):
    """A stored failure: its id, when it was (last) stored, and when it was replayed."""

    id: int
    created_at: datetime
    replayed_at: datetime | None


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters a list, replay or purge means. Named ids match replayed rows too."""

    ids: tuple[int, ...] = ()
    event: str | None = None
    error: str | None = None
    since: datetime | None = None
    include_replayed: bool = False


@dataclass(frozen=True)
class PushedProjection:
    """What the connector last pushed to Brevo for one contact."""

    email: str
    attributes: dict[str, Any]
    #: The lists the connector manages for this contact (added by it, so it may unlink them).
    list_ids: tuple[int, ...]
    projection_hash: str
    mapping_fingerprint: str
    pushed_at: datetime
    event_id: str | None = None


class Ledger(Protocol):
    #: The errors of a write that may succeed if repeated (a database restarting).
    transient_errors: tuple[type[Exception], ...]

    # -- claims and effects --------------------------------------------------------------------
    def contact_lock(self, key: str) -> AbstractContextManager[None]:
        """Serialise all work on one contact (key: the email, else the event id)."""
        ...

    def claim(self, new: Arrival, state: State | None = None) -> Claim:
        """Claim ``new.event_id`` for processing; call under the contact lock. With
        ``state=(record, mark)`` and an email, a claim that is not a duplicate also merges the
        record and mark into the stored state and reads the contact's state back, atomically."""
        ...

    def record_effect(
        self,
        event_id: str,
        effects: dict[str, Any],
        finish: str | None = None,
        *,
        calls: list[dict[str, Any]] | None = None,
    ) -> None:
        """Store the event's ``effects`` (the claim's, with the new one added: the caller holds
        the contact lock, so nobody else writes them); with ``finish``, also the final status,
        in the same commit. ``calls``: the event's whole Brevo call log replaces the stored one
        (``None`` leaves it), here and in :meth:`finish` and :meth:`dead_letter`."""
        ...

    def finish(
        self,
        event_id: str,
        status: str,
        error: str | None = None,
        *,
        calls: list[dict[str, Any]] | None = None,
    ) -> None: ...

    def event(self, event_id: str) -> EventRow | None: ...

    def settled(self, event_ids: Iterable[str]) -> set[str]:
        """Those of ``event_ids`` whose claim is :data:`SETTLED`."""
        ...

    def unsent_events(
        self,
        since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 500,
    ) -> list[EventRow]:
        """Events done as one of :data:`UNSENT_STATUSES` at or after ``since`` whose effects
        record no custom event (no ``event`` key), oldest first by ``(applied_at, event_id)``,
        those after ``after`` only (keyset pages for ``resync --events``)."""
        ...

    # -- invitee state -------------------------------------------------------------------------
    def contact_state(self, email: str) -> tuple[list[InviteeRecord], list[NoShowMark]]:
        """Every invitee record of ``email`` and every no-show mark of those invitees."""
        ...

    def contact_states(
        self, emails: Iterable[str]
    ) -> dict[str, tuple[list[InviteeRecord], list[NoShowMark]]]:
        """:meth:`contact_state` of many contacts in one read (only those with a record)."""
        ...

    # -- dead letters --------------------------------------------------------------------------
    def dead_letter(self, failure: Failure, *, calls: list[dict[str, Any]] | None = None) -> int:
        """Store a dead letter and mark its event ``dead``; returns its id. An event has at most
        one open dead letter: a later failure updates it with the new cause. The error text is
        scrubbed of input values, emails and phone numbers."""
        ...

    def dead_letters(self, f: DeadLetterFilter, limit: int | None = 100) -> list[DeadLetter]:
        """Matching dead letters, oldest first."""
        ...

    def dead_letter_by_id(self, dl_id: int) -> DeadLetter | None: ...

    def mark_replayed(self, dl_id: int) -> None: ...

    def purge_dead_letters(self, f: DeadLetterFilter) -> int: ...

    def open_dead_letters(self) -> int: ...

    # -- tombstones ----------------------------------------------------------------------------
    def add_tombstone(self, email: str, invitee_uris: Iterable[str]) -> None:
        """Remember that this person (``email`` normalised as the worker keys contacts) was
        forgotten. Only SHA-256 hashes are stored, unsalted so that any process can look them
        up: whoever holds the database and guesses an address can confirm it was forgotten."""
        ...

    def is_tombstoned(self, *, email: str | None = None, invitee_uri: str | None = None) -> bool:
        """Whether the email or the invitee URI belongs to a forgotten person. An old event of
        theirs names a tombstoned invitee URI; a new booking after ``forget`` does not."""
        ...

    # -- last pushed projections ---------------------------------------------------------------
    def contacts(self, after: str | None = None, limit: int | None = None) -> list[str]:
        """Every email with stored invitee records or a pushed projection, in order, those
        greater than ``after`` only, at most ``limit`` (keyset pages for ``resync``)."""
        ...

    def last_pushed(self, email: str) -> PushedProjection | None: ...

    def last_pushed_many(self, emails: Iterable[str]) -> dict[str, PushedProjection]:
        """:meth:`last_pushed` of many contacts in one read (only those pushed before)."""
        ...

    def record_pushed(self, pushed: PushedProjection) -> None: ...

    def stale_pushed(self, fingerprint: str) -> int:
        """How many contacts were last pushed under another mapping than ``fingerprint``
        (``resync`` brings them up to date)."""
        ...


def record_durably(
    ledger: Ledger,
    event_id: str,
    effects: dict[str, Any],
    finish: str | None = None,
    *,
    calls: list[dict[str, Any]] | None = None,
    give_up_after: float = 300.0,
) -> None:
    """Record an effect Brevo has *already* accepted, waiting out a database outage.

    Raising here would retry the event and send its custom event a second time, so the write is
    repeated (with backoff, for up to ``give_up_after`` seconds) until it lands."""
    durably(
        ledger,
        lambda: ledger.record_effect(event_id, effects, finish, calls=calls),
        what=",".join(sorted(effects)),
        give_up_after=give_up_after,
    )


def durably(
    ledger: Ledger, write: Callable[[], None], *, what: str, give_up_after: float = 300.0
) -> None:
    """``write`` (of effects Brevo has taken), repeated with backoff while the database is out,
    for up to ``give_up_after`` seconds (:func:`record_durably`)."""
    deadline = time.monotonic() + give_up_after
    wait = 0.2
    while True:
        try:
            write()
            return
        except ledger.transient_errors as exc:
            if time.monotonic() + wait > deadline:
                raise
            log.warning("effect_record_retry", effects=what, error=type(exc).__name__)
            time.sleep(wait)
            wait = min(wait * 2, 5.0)


def striped_lock(locks: list[Any], key: str) -> Any:
    """One of ``locks`` for ``key``: the process-local contact lock."""
    return locks[lock_key(key) % len(locks)]
