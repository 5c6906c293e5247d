"""`brevo setup` creates every attribute the connector may write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calendly_brevo.brevo.setup import apply_setup, require_setup
from calendly_brevo.calendly.links import DEFAULT_ATTRIBUTE
from tests.conftest import make_settings


class InMemoryAccount:
    def __init__(self) -> None:
        self.attributes: dict[str, str] = {}

    def get_attributes(self) -> list[dict[str, Any]]:
        return [{"name": n, "type": t, "category": "normal"} for n, t in self.attributes.items()]

    def get_lists(self) -> list[dict[str, Any]]:
        return []

    def create_attribute(
        self, category: Any, name: str, type_: Any = None, enumeration: Any = None
    ) -> None:
        assert category == "normal"
        self.attributes[name] = str(type_)


def test_brevo_setup_creates_the_booking_link_attribute_that_links_create_writes(
    tmp_path: Path,
) -> None:
    account = InMemoryAccount()
    settings = make_settings(tmp_path)
    created, report = apply_setup(account, settings)
    assert DEFAULT_ATTRIBUTE == "CALENDLY_BOOKING_LINK"
    assert account.attributes[DEFAULT_ATTRIBUTE] == "text"
    assert DEFAULT_ATTRIBUTE in created and report.ok
    assert apply_setup(account, settings)[0] == [], "a second run creates nothing"


def test_the_worker_starts_without_the_booking_link_attribute(tmp_path: Path) -> None:
    account = InMemoryAccount()
    settings = make_settings(tmp_path, BREVO_API_KEY="xkeysib-a")
    apply_setup(account, settings)
    del account.attributes[DEFAULT_ATTRIBUTE]
    require_setup(account, settings)  # only what the worker writes is required


def test_brevo_setup_creates_the_fallback_for_an_sms_reminder_number_that_conflicts(
    tmp_path: Path,
) -> None:
    account = InMemoryAccount()
    apply_setup(account, make_settings(tmp_path))
    assert account.attributes["PHONE_TEXT"] == "text"
    assert "SMS" not in account.attributes, "SMS is a standard attribute, never created"
