"""Personal data in text: the one home of the email patterns and of every mask.

- :data:`EMAIL_ADDRESS` is what the connector accepts as an address (``fullmatch``): something,
  ``@``, a dotted domain. Contacts are keyed by it (:func:`calendly_brevo.events.normalize_email`).
- :data:`EMAIL_IN_TEXT` finds addresses inside free text (log lines, error messages): dot-atom or
  quoted local parts (``"john doe"@…``) and IDN domains (``bücher.de``, ``пример.рф``).
- :func:`mask_email` keeps the first character of the local part and the domain
  (``jane@example.com`` → ``j***@example.com``): enough to tell two customers' domains apart in
  a log, not enough to name the person. :func:`mask_phone` and :func:`mask_name` likewise.
"""

from __future__ import annotations

import re

EMAIL_ADDRESS = re.compile(r"[^@\s]+@[^@\s.][^@\s]*\.[^@\s.]+")
EMAIL_IN_TEXT = re.compile(
    r"(?:\"(?:[^\"\\\r\n]|\\.)+\"|[\w.%+\-!#$&'*/=?^`{|}~]+)@(?:[\w\-]+\.)+[\w\-]{2,}"
)
#: Anything shaped ``local@host`` on its own (``x@localhost``): masked when a field holds it.
_LONE_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+")
#: An international number (``+31 6 1234 5678``, ``+1 (555) 123-4567``): 8 digits or more.
PHONE_IN_TEXT = re.compile(r"\+\d(?:[\s().\-]{0,2}\d){7,14}")


def _mask_one(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_email(text: str) -> str:
    """Every address in ``text`` masked; a lone ``local@host`` too (see the module docstring)."""
    masked, found = EMAIL_IN_TEXT.subn(lambda m: _mask_one(m.group(0)), text)
    if not found and _LONE_ADDRESS.fullmatch(text.strip()):
        return _mask_one(text.strip())
    return masked


def mask_phone(text: str) -> str:
    """``+31612345678`` → ``+31*******78``, wherever a number stands in ``text``."""

    def sub(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        return f"+{digits[:2]}{'*' * (len(digits) - 4)}{digits[-2:]}"

    return PHONE_IN_TEXT.sub(sub, text)


def mask_name(value: str) -> str:
    return f"{value[:1]}***" if value else value


def is_address(value: str) -> bool:
    """Whether ``value`` (stripped) is shaped like an address a field may hold."""
    return _LONE_ADDRESS.fullmatch(value.strip()) is not None
