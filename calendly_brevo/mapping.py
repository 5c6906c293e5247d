"""The mapping engine: one invitee record → Brevo lists and attributes (``field_mapping``).

Lists (``event_mapping``), tried in tiers; the first tier with a match wins and every entry in
it contributes all its lists (config order, no duplicates):

1. ``event_type_uri`` equal to the record's event type URI (trailing ``/`` ignored);
2. the entry's ``slug`` (else its mapping key) equal to the slugified event type name
   (``discovery_call`` and ``Discovery Call`` are both ``discovery-call``);
3. the entry's ``name`` equal to the event type name, case- and whitespace-insensitively.

An entry that names an ``event_type_uri`` is pinned to it: it takes part in tiers 2 and 3 only
for records that carry no event type URI at all. A record without ``scheduled_event`` (payloads
from before 2023) has neither URI nor name and maps to no list; its contact is still upserted.

Attributes (all values are ``str``; empty values are left out so Brevo keeps what it has):

- Names: ``first_name``/``last_name`` from Calendly, else ``name`` split at the first
  whitespace ("Jean Claude Van Damme" → "Jean" / "Claude Van Damme"). ``field_mapping.name``
  receives the given name when it plays the first-name role (``first_name`` unmapped,
  ``last_name`` mapped: the seed's ``name: FIRSTNAME``), the full name otherwise.
- Questions (``questions_and_answers: {key: ATTRIBUTE}``): key and question are compared as
  words (NFKC, case-folded, every run of non-alphanumerics is one space, so ``job_title`` is
  "job title"). Tier 1: the same words. Tier 2: the question starts with the key's words
  ("company" → "Company name"). Tier 3: the key's words appear as whole consecutive words
  anywhere ("role" → "What is your role?"). In each tier the first question by Calendly's
  ``position`` wins, so the result is deterministic. Multi-select answers (one line per
  choice) become "A, B, C".
- Phones: an answer mapped to ``SMS``, ``WHATSAPP`` or ``LANDLINE_NUMBER`` is normalised to
  E.164 with ``phonenumbers`` ("+1 234-567-8910", "0031 6 ...", or a national number read in
  ``field_mapping.phone_default_region``, else in the country of the invitee's timezone from
  the tz database's ``zone.tab``, see :func:`region_for_timezone`). A number that does not
  parse as a valid number is left out of the phone attribute (Brevo would refuse the whole
  upsert) and kept as typed in ``brevo.sms_fallback_attribute``.
- ``scheduled_at`` (MEETING_DATE): ``YYYY-MM-DD`` of ``start_time`` in the invitee's timezone,
  the date printed in the invitee's calendar; UTC when the timezone is unknown to the runtime.
- ``status``, ``event_type_name``, ``timezone``, ``cancel_url``, ``reschedule_url`` as is;
  ``tracking: {utm_source: UTM_SOURCE}`` from the invitee's UTM fields.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from calendly_brevo.config import EventMappingEntry, EventTypeFilter, FieldMapping, Rules, Settings
from calendly_brevo.state import InviteeRecord
from calendly_brevo.times import parse_time

#: Brevo attributes that are phone identifiers and only take E.164 numbers.
PHONE_ATTRIBUTES = frozenset({"SMS", "WHATSAPP", "LANDLINE_NUMBER"})

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


# --- text helpers ------------------------------------------------------------------------------
def words(text: str) -> tuple[str, ...]:
    """NFKC, case-folded, split on every run of non-alphanumerics (accents are kept)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return tuple(w for w in re.split(r"[\W_]+", folded) if w)


def slugify(text: str) -> str:
    """ASCII slug: "Discovery Call" and "discovery_call" → ``discovery-call``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_ALNUM.sub("-", ascii_text.lower()).strip("-")


def readable_answer(answer: str) -> str:
    """Multi-select answers arrive one choice per line: "A\\nB" → "A, B"."""
    lines = [line.strip() for line in answer.splitlines()]
    return ", ".join(line for line in lines if line)


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return any(tuple(haystack[i : i + n]) == tuple(needle) for i in range(len(haystack) - n + 1))


def match_answer(key: str, questions_and_answers: Iterable[tuple[str, str]]) -> str | None:
    """The raw answer to the question that ``key`` names (tiers in the module docstring)."""
    wanted = words(key)
    if not wanted:
        return None
    pairs = [(words(q), a) for q, a in questions_and_answers]
    tiers = (
        lambda q: q == wanted,
        lambda q: q[: len(wanted)] == wanted,
        lambda q: _contains(q, wanted),
    )
    for matches in tiers:
        for question, answer in pairs:
            if matches(question) and answer.strip():
                return answer
    return None


# --- phones, dates, names ----------------------------------------------------------------------
@cache
def _timezone_regions() -> dict[str, str]:
    """IANA zone → ISO 3166 country, from the tz database's ``zone.tab`` (read once, on first
    use, from ``zoneinfo.TZPATH`` or the ``tzdata`` package; empty when neither has it)."""
    candidates = [Path(d) / "zone.tab" for d in zoneinfo.TZPATH]
    with contextlib.suppress(ImportError, OSError, TypeError):
        candidates.append(Path(str(resources.files("tzdata") / "zoneinfo" / "zone.tab")))
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        regions: dict[str, str] = {}
        for line in text.splitlines():
            cols = line.split("\t")
            if len(cols) >= 3 and not line.startswith("#"):
                regions[cols[2].strip()] = cols[0].strip().upper()
        return regions
    return {}


def region_for_timezone(timezone: str | None) -> str | None:
    """The invitee's country from their IANA timezone (``None`` if unknown or not a country:
    ``UTC``). A guess: Calendly's timezone is the browser's, not the phone's home."""
    if not timezone:
        return None
    return _timezone_regions().get(timezone.strip())


def normalize_phone(raw: str | None, default_region: str | None = None) -> str | None:
    """E.164 (``+31612345678``) for a valid number, else ``None``."""
    if not raw or not raw.strip():
        return None
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    region = default_region.upper() if default_region else None
    if not text.startswith("+") and region is None:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def meeting_date(start_time: str | None, timezone: str | None) -> str | None:
    """``YYYY-MM-DD`` of ``start_time`` in ``timezone`` (UTC if unknown), else ``None``."""
    start = parse_time(start_time)
    if start is None:
        return None
    if timezone:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError, OSError):
            start = start.astimezone(ZoneInfo(timezone.strip()))
    return start.strftime("%Y-%m-%d")


def split_name(record: InviteeRecord) -> tuple[str | None, str | None]:
    """(given name, family name): Calendly's split fields, else ``name`` at the first space."""
    first, last = record.first_name, record.last_name
    if first is None or last is None:
        parts = (record.name or "").split(None, 1)
        first = first or (parts[0] if parts else None)
        last = last or (parts[1] if len(parts) > 1 else None)
    return first, last


def full_name(record: InviteeRecord) -> str | None:
    if record.name:
        return record.name
    joined = " ".join(p for p in (record.first_name, record.last_name) if p)
    return joined or None


# --- lists -------------------------------------------------------------------------------------
def _uri(value: str | None) -> str | None:
    return value.strip().rstrip("/") if value and value.strip() else None


def lists_for(
    record: InviteeRecord, event_mapping: Mapping[str, EventMappingEntry]
) -> tuple[int, ...]:
    """Brevo list ids for the record's event type (tiers in the module docstring)."""
    entries = list(event_mapping.items())
    uri = _uri(record.event_type_uri)
    name = record.event_type_name

    def free(entry: EventMappingEntry) -> bool:
        return uri is None or entry.event_type_uri is None

    tiers: list[list[EventMappingEntry]] = []
    if uri is not None:
        tiers.append([e for _, e in entries if _uri(e.event_type_uri) == uri])
    if name:
        slug = slugify(name)
        tiers.append([e for k, e in entries if free(e) and slug and slugify(e.slug or k) == slug])
        tiers.append([e for _, e in entries if free(e) and e.name and words(e.name) == words(name)])
    for matched in tiers:
        if matched:
            return tuple(dict.fromkeys(i for entry in matched for i in entry.lists))
    return ()


def _names_type(entry: str, record: InviteeRecord) -> bool:
    """Whether a filter entry (URI, slug or name) names the record's event type."""
    if entry.startswith(("http://", "https://")):
        return _uri(entry) == _uri(record.event_type_uri)
    name = record.event_type_name
    if not name:
        return False
    return slugify(entry) == slugify(name) or words(entry) == words(name)


def event_type_synced(record: InviteeRecord, f: EventTypeFilter) -> bool:
    """``connectors.calendly.sync.event_types``: whether this booking's type is pushed. With an
    ``include`` list, a record of no known type (pre-2023 payloads) is not included."""
    if f.include and not any(_names_type(e, record) for e in f.include):
        return False
    return not any(_names_type(e, record) for e in f.exclude)


def managed_lists(settings: Settings) -> frozenset[int]:
    """:meth:`Rules.managed_lists` of ``settings``, for ``brevo setup``'s check (which still
    passes the whole settings)."""
    return settings.rules.managed_lists()


# --- attributes --------------------------------------------------------------------------------
def _put(attrs: dict[str, Any], attribute: str | None, value: str | None) -> None:
    if attribute and value is not None and value.strip():
        attrs.setdefault(attribute, value.strip())


def question_attributes(
    questions_and_answers: Sequence[tuple[str, str]],
    rules: Rules,
    default_region: str | None,
) -> dict[str, Any]:
    """``field_mapping.questions_and_answers`` applied to a list of (question, answer)."""
    attrs: dict[str, Any] = {}
    fallback = rules.sms_fallback_attribute
    for key, attribute in rules.fields.questions_and_answers.items():
        answer = match_answer(key, questions_and_answers)
        if answer is None:
            continue
        if attribute in PHONE_ATTRIBUTES:
            phone = normalize_phone(answer, default_region)
            if phone is not None:
                _put(attrs, attribute, phone)
            else:
                _put(attrs, fallback, readable_answer(answer))
        else:
            _put(attrs, attribute, readable_answer(answer))
    return attrs


def person_attributes(record: InviteeRecord, rules: Rules) -> dict[str, Any]:
    """Attributes about the person: names, answers, phone, timezone, UTM tracking."""
    m = rules.fields
    attrs: dict[str, Any] = {}
    first, last = split_name(record)
    _put(attrs, m.first_name, first)
    _put(attrs, m.last_name, last)
    if m.name:
        plays_first = m.first_name is None and m.last_name is not None
        _put(attrs, m.name, first if plays_first else full_name(record))
    region = m.phone_default_region or region_for_timezone(record.timezone)
    for attribute, value in question_attributes(
        record.questions_and_answers, rules, region
    ).items():
        attrs.setdefault(attribute, value)
    reminder = m.text_reminder_number
    if reminder and record.text_reminder_number and reminder not in attrs:
        phone = normalize_phone(record.text_reminder_number, region)
        if phone is not None or reminder not in PHONE_ATTRIBUTES:
            _put(attrs, reminder, phone or record.text_reminder_number)
        else:  # not a valid number: kept where a conflicting SMS would go, as for answers
            _put(attrs, rules.sms_fallback_attribute, record.text_reminder_number)
    _put(attrs, m.timezone, record.timezone)
    tracking = {k.casefold(): v for k, v in record.tracking}
    for key, attribute in m.tracking.items():
        _put(attrs, attribute, tracking.get(key.strip().casefold()))
    return attrs


def booking_attributes(
    record: InviteeRecord, status: str | None, m: FieldMapping
) -> dict[str, Any]:
    """Attributes about one booking: status, date, event type, its links."""
    attrs: dict[str, Any] = {}
    _put(attrs, m.status, status)
    _put(attrs, m.scheduled_at, meeting_date(record.start_time, record.timezone))
    _put(attrs, m.event_type_name, record.event_type_name)
    _put(attrs, m.cancel_url, record.cancel_url)
    _put(attrs, m.reschedule_url, record.reschedule_url)
    return attrs


def attributes_for(record: InviteeRecord, status: str | None, rules: Rules) -> dict[str, Any]:
    """All Brevo attributes one record gives (booking attributes win a name clash)."""
    return {**person_attributes(record, rules), **booking_attributes(record, status, rules.fields)}
