"""What the mapping needs in Brevo, whether it is there, and ``brevo setup`` to create it.

Brevo silently ignores an attribute it does not know (and a value of the wrong type), so a
missing ``MEETING_DATE`` would lose data without an error. The worker therefore checks at start
and refuses to run until ``calendly-brevo brevo setup`` has created what is missing. Lists cannot
be created for you (their ids are in your config), so a missing list is reported with its id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from calendly_brevo.config import Settings
from calendly_brevo.errors import BrevoSetupError
from calendly_brevo.mapping import PHONE_ATTRIBUTES, managed_lists

#: Standard attributes every Brevo account has; they cannot be created as normal attributes.
STANDARD = frozenset({"EMAIL", "FIRSTNAME", "LASTNAME", "SMS", "WHATSAPP", "LANDLINE_NUMBER"})


class SetupClient(Protocol):
    def get_attributes(self) -> list[dict[str, Any]]: ...

    def get_lists(self) -> list[dict[str, Any]]: ...

    def create_attribute(
        self, category: Any, name: str, type_: Any = None, enumeration: Any = None
    ) -> None: ...


#: Attributes commands other than the worker may write (``links create --email``). ``brevo setup``
#: creates them; the worker does not refuse to start without them.
COMMAND_ATTRIBUTES = {"CALENDLY_BOOKING_LINK": "text"}


def required_attributes(settings: Settings) -> dict[str, str]:
    """Attribute name → Brevo type for everything the mapping writes."""
    m = settings.mapping
    wanted: dict[str, str] = {}
    for name in (
        m.name,
        m.first_name,
        m.last_name,
        m.event_type_name,
        m.status,
        m.timezone,
        m.cancel_url,
        m.reschedule_url,
    ):
        if name:
            wanted[name] = "text"
    if m.scheduled_at:
        wanted[m.scheduled_at] = "date"
    for name in [*m.questions_and_answers.values(), *m.tracking.values()]:
        wanted.setdefault(name, "text")
    if PHONE_ATTRIBUTES & set(wanted) and settings.brevo.sms_fallback_attribute:
        wanted.setdefault(settings.brevo.sms_fallback_attribute, "text")
    return wanted


@dataclass
class SetupReport:
    missing_attributes: dict[str, str] = field(default_factory=dict)
    wrong_types: dict[str, tuple[str, str]] = field(default_factory=dict)
    missing_lists: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing_attributes or self.wrong_types or self.missing_lists)

    def describe(self) -> str:
        parts = []
        if self.missing_attributes:
            names = ", ".join(f"{n} ({t})" for n, t in sorted(self.missing_attributes.items()))
            parts.append(f"missing attributes: {names} — run `calendly-brevo brevo setup`")
        if self.wrong_types:
            names = ", ".join(
                f"{n} is {have}, the mapping writes {want}"
                for n, (have, want) in sorted(self.wrong_types.items())
            )
            parts.append(f"attributes of the wrong type: {names} — fix them in Brevo")
        if self.missing_lists:
            ids = ", ".join(map(str, sorted(self.missing_lists)))
            parts.append(
                f"lists not found in Brevo: {ids} — create them or fix event_mapping/list_moves"
            )
        return "; ".join(parts) or "Brevo has every attribute and list the mapping needs"


def check_setup(client: SetupClient, settings: Settings) -> SetupReport:
    report = SetupReport()
    have = {
        str(a.get("name", "")).upper(): str(a.get("type") or "text").lower()
        for a in client.get_attributes()
    }
    for name, kind in required_attributes(settings).items():
        if name not in have:
            if name not in STANDARD:
                report.missing_attributes[name] = kind
        elif kind == "date" and have[name] != "date":
            report.wrong_types[name] = (have[name], kind)
    lists = managed_lists(settings)
    if lists:
        existing = {int(item["id"]) for item in client.get_lists() if "id" in item}
        report.missing_lists = sorted(lists - existing)
    return report


def apply_setup(client: SetupClient, settings: Settings) -> tuple[list[str], SetupReport]:
    """Create the missing attributes (those the commands write too); return what was created
    and the report after."""
    before = check_setup(client, settings)
    have = {str(a.get("name", "")).upper() for a in client.get_attributes()}
    missing = dict(before.missing_attributes)
    optional = dict(COMMAND_ATTRIBUTES)
    fallback = settings.brevo.sms_fallback_attribute
    if settings.mapping.text_reminder_number in PHONE_ATTRIBUTES and fallback:
        optional[fallback] = "text"  # an SMS-reminder number that conflicts or does not parse
    missing.update({n: k for n, k in optional.items() if n not in have and n not in STANDARD})
    created = []
    for name, kind in sorted(missing.items()):
        client.create_attribute("normal", name, kind)
        created.append(name)
    return created, check_setup(client, settings)


def require_setup(client: SetupClient, settings: Settings) -> None:
    """Raise :class:`BrevoSetupError` naming what is missing (dry run: nothing to check)."""
    if settings.dry_run:
        return
    report = check_setup(client, settings)
    if not report.ok:
        raise BrevoSetupError("Brevo is not ready for this mapping: " + report.describe())
