"""``brevo.batch``: coalescing of the worker's Brevo calls into Brevo's bulk endpoints.

The batch limits and their evidence sit together here. See :mod:`calendly_brevo.brevo.batching`
and the README's "Bulk endpoints" section.
"""

from __future__ import annotations

from pydantic import Field

from calendly_brevo.config.base import Strict

#: Brevo's guide for ``POST /events/batch``: at most 200 events and 512 KB a request.
BREVO_MAX_BATCH_EVENTS = 200
BREVO_MAX_BATCH_BYTES = 512 * 1024


class BatchSettings(Strict):
    #: Off: every contact update and custom event is its own request (one per call).
    enabled: bool = True
    #: How long the first call of a batch waits for others to join it. A lone event is never
    #: held longer than this.
    window_ms: int = Field(default=150, ge=1, le=2000)
    #: Custom events per ``POST /events/batch`` (Brevo's guide: at most 200 and 512 KB).
    max_events: int = Field(default=100, ge=1, le=BREVO_MAX_BATCH_EVENTS)
    max_event_bytes: int = Field(default=400 * 1024, ge=1024, le=BREVO_MAX_BATCH_BYTES)
    #: Contacts per ``POST /contacts/batch``. Brevo documents no maximum; 100 stays well under
    #: the 150 its list endpoints allow and the 10 MB body limit of its imports.
    max_contacts: int = Field(default=100, ge=1, le=1000)
    #: ``resync`` creates contacts Brevo may not hold yet (never pushed: after a dry run, say)
    #: up to this many per ``POST /contacts/import`` (0: one ``POST /contacts`` each). Brevo
    #: allows 10 MB per import; a thousand rows of a booking's attributes are well under 1 MB.
    max_import: int = Field(default=1000, ge=0, le=10_000)
    #: How long an import is read back before the contacts not yet seen are created one by
    #: one (Brevo's imports are asynchronous; the read is a contacts-family call).
    import_confirm_seconds: float = Field(default=60.0, ge=0, le=600)
    #: The worker imports first-time contacts too (a batch of at least 3), each event waiting
    #: until its contact is read back. Off by default: a worker thread waits out Brevo's import
    #: latency, so this pays only with many threads (README, "Bulk endpoints").
    live_imports: bool = False

    @property
    def window_seconds(self) -> float:
        return self.window_ms / 1000
