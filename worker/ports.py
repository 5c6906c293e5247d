"""The parts the pipeline is given rather than builds: the Brevo client and the in-doubt
lookups' budget. Protocols, so tests pass a fake and the embedded mode a client of its own."""

from __future__ import annotations

from typing import Any, Protocol


class BrevoPort(Protocol):
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

    def create_event(
        self,
        event_name: str,
        *,
        email: str,
        properties: dict[str, Any] | None = None,
        contact_properties: dict[str, Any] | None = None,
        event_date: str | None = None,
    ) -> Any: ...

    def event_recorded(
        self,
        event_name: str,
        *,
        event_date: str | None,
        property_name: str,
        property_value: str,
    ) -> bool: ...


class LookupBudget(Protocol):
    """The in-doubt lookups' share of Brevo's "other" family (``brevo.lookup_share``)."""

    def take(self) -> bool:
        """A lookup may be made now (a token is taken); ``False``: the share is spent."""
        ...
