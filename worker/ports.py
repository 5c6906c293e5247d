"""What the pipeline needs from the outside, as protocols: a Brevo client and a lookup budget.

:class:`~calendly_brevo.brevo.client.BrevoClient` is the real Brevo port; the tests pass a
recording fake. :class:`~worker.runtime.BucketLookupBudget` is the real lookup budget.
"""

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
    ) -> Any: ...

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
