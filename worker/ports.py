"""The parts the pipeline is given rather than builds: the Brevo client and the in-doubt
lookups' budget. Protocols, so tests pass a fake and the embedded mode a client of its own."""

from __future__ import annotations

from typing import Any, Protocol

from calendly_brevo.event_send import EventPort, LookupBudget

__all__ = ["BrevoPort", "LookupBudget"]


class BrevoPort(EventPort, Protocol):
    """The Brevo calls of an event: the contact upsert, and the custom event's
    (:class:`~calendly_brevo.event_send.EventPort`)."""

    @property
    def dry_run(self) -> bool:
        """``True``: the client logs the calls it would make and sends nothing."""
        ...

    def upsert_contact(
        self,
        email: str,
        attributes: dict[str, Any],
        list_ids: tuple[int, ...] | list[int] = (),
        unlink_list_ids: tuple[int, ...] | list[int] = (),
        *,
        existing: bool = False,
    ) -> Any:
        """``existing``: the connector pushed this contact before (Brevo holds it unless
        someone deleted it), so it may go out as part of a ``/contacts/batch`` update."""
        ...
