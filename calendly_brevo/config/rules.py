"""The part of the settings the business rules read, and nothing else.

:mod:`~calendly_brevo.mapping`, :mod:`~calendly_brevo.projection`, the custom events and the
mapping fingerprint take a :class:`Rules` (``settings.rules``, built once per ``Settings``), not
the whole :class:`~calendly_brevo.config.settings.Settings`: a rule cannot reach a key, a URL or
a port, and a test builds only what the rule uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from calendly_brevo.config.brevo import BrevoEventNames, ListMoves
from calendly_brevo.config.calendly import EventMappingEntry, FieldMapping, SyncSwitches


@dataclass(frozen=True)
class Rules:
    #: ``connectors.calendly.enabled``: off, nothing is pushed.
    enabled: bool
    #: ``connectors.calendly.sync``: the switches and the event-type filter.
    sync: SyncSwitches
    #: ``connectors.calendly.event_mapping``: event type → Brevo lists.
    event_mapping: Mapping[str, EventMappingEntry]
    #: ``field_mapping`` (or the one nested under ``connectors.calendly``).
    fields: FieldMapping
    #: ``brevo.list_moves``.
    list_moves: ListMoves
    #: ``brevo.events``: the custom events' names.
    events: BrevoEventNames
    #: ``brevo.upsert_routing_form_submitters``.
    upsert_routing_form_submitters: bool = False
    #: ``brevo.sms_fallback_attribute``: where a phone number Brevo would refuse is kept.
    sms_fallback_attribute: str = "PHONE_TEXT"

    def managed_lists(self) -> frozenset[int]:
        """Every list named anywhere in the config: the connector owns their membership."""
        ids = {i for entry in self.event_mapping.values() for i in entry.lists}
        for move in (self.list_moves.on_cancel, self.list_moves.on_no_show):
            ids.update(move.add)
            ids.update(move.remove)
        return frozenset(ids)
