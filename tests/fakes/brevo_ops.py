"""Brevo's contact semantics as plain functions over ``FakeBrevo``: each returns (status, body)
or raises ``BrevoError``. Every check runs before the first mutation, so a rejected request
changes nothing. Lists/attributes/account are in ``brevo_account``, events in ``brevo_events``,
the strict (violation) checks in ``brevo_strict``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tests.fakes.brevo_records import Contact, IgnoredAttribute
from tests.fakes.brevo_state import FakeBrevo, iso_now
from tests.fakes.brevo_strict import is_date

Reply = tuple[int, dict[str, Any] | None]
_PHONE = re.compile(r"^(?:\+|00)?(\d{6,15})$")


class BrevoError(Exception):
    """An error answer in Brevo's shape."""

    def __init__(
        self, status: int, code: str, message: str, metadata: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.metadata = metadata

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.metadata is not None:
            body["metadata"] = self.metadata
        return body


# -- contacts ------------------------------------------------------------------------------


def _phone_key(value: Any) -> str | None:
    match = _PHONE.match(str(value).replace(" ", ""))
    return match.group(1) if match else None


def find_contact(
    state: FakeBrevo, identifier: str, identifier_type: str | None, *, phone_ok: bool = False
) -> Contact | None:
    """Brevo's lookup. Without ``identifierType``: digits are an id, anything with ``@`` an
    email, and (only where Brevo allows it, ``phone_ok``: GET) anything else an SMS number."""
    if identifier_type is None:
        if identifier.isdigit():
            identifier_type = "contact_id"
        elif "@" in identifier or not phone_ok:
            identifier_type = "email_id"
        else:
            identifier_type = "phone_id"
    if identifier_type == "email_id":
        return state.contact(identifier)
    if identifier_type == "contact_id":
        return state.contact_by_id(int(identifier)) if identifier.isdigit() else None
    if identifier_type == "ext_id":
        return next((c for c in state.contacts.values() if c.ext_id == identifier), None)
    if identifier_type == "phone_id":
        key = _phone_key(identifier)
        return next(
            (c for c in state.contacts.values() if _phone_key(c.attributes.get("SMS")) == key),
            None,
        )
    return None


def _check_identifiers(
    state: FakeBrevo, me: Contact | None, attributes: Mapping[str, Any], ext_id: Any, verb: str
) -> None:
    duplicated: list[str] = []
    others = [c for c in state.contacts.values() if c is not me]
    if "SMS" in attributes and "SMS" in state.attributes:
        key = _phone_key(attributes["SMS"])
        if key is None:
            raise BrevoError(
                400,
                "invalid_parameter",
                "Invalid phone number, SMS phone number should be in format: "
                "91xxxxxxxxxx or +91xxxxxxxxxx",
            )
        if any(_phone_key(c.attributes.get("SMS")) == key for c in others):
            duplicated.append("SMS")
    if ext_id is not None and any(c.ext_id == ext_id for c in others):
        duplicated.append("ext_id")
    if duplicated:
        what = "SMS" if duplicated == ["SMS"] else "EXT_ID" if len(duplicated) == 1 else None
        message = (
            f"Unable to {verb} contact, {what} is already associated with another Contact"
            if what
            else f"Unable to {verb} contact, SMS or EXT_ID are already associated with another "
            "Contact"
        )
        raise BrevoError(400, "duplicate_parameter", message, {"duplicate_identifiers": duplicated})


def _known_lists(state: FakeBrevo, list_ids: Any) -> set[int]:
    wanted = set(list_ids or [])
    unknown = sorted(wanted - set(state.lists))
    if unknown and state.unknown_list_policy == "reject":
        raise BrevoError(400, "invalid_parameter", f"Invalid list ids: {unknown}")
    return wanted & set(state.lists)


def _fits(kind: str, value: Any) -> bool:
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date":
        return is_date(value)
    if kind == "multiple-choice":
        return isinstance(value, list)
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def merge_attributes(
    state: FakeBrevo, seq: int, email: str, current: Mapping[str, Any], given: Mapping[str, Any]
) -> tuple[dict[str, Any], list[IgnoredAttribute]]:
    merged = dict(current)
    ignored: list[IgnoredAttribute] = []
    for name, value in given.items():
        if name == "EMAIL":
            continue
        attribute = state.attributes.get(name)
        if attribute is None:
            ignored.append(IgnoredAttribute(seq, email, name, value, "not defined in the account"))
        elif not _fits(attribute.type, value):
            reason = f"value does not fit the {attribute.type} attribute"
            ignored.append(IgnoredAttribute(seq, email, name, value, reason))
        else:
            merged[name] = value
    return merged, ignored


def create_contact(state: FakeBrevo, body: dict[str, Any], seq: int) -> Reply:
    email = body.get("email")
    if not email:
        raise BrevoError(
            400,
            "missing_parameter",
            "Please provide Email (the fake Brevo keeps email contacts only)",
        )
    existing = state.contact(email)
    if existing is not None and not body.get("updateEnabled", False):
        raise BrevoError(
            400,
            "duplicate_parameter",
            "Contact already exist",
            {"duplicate_identifiers": ["email"]},
        )
    attributes = body.get("attributes") or {}
    _check_identifiers(
        state, existing, attributes, body.get("ext_id"), "update" if existing else "create"
    )
    list_ids = _known_lists(state, body.get("listIds"))
    now = iso_now(state.clock)
    merged, ignored = merge_attributes(
        state, seq, email, existing.attributes if existing else {}, attributes
    )
    state.ignored_attributes.extend(ignored)
    contact = existing or Contact(state.next_contact_id(), email, {}, set(), now, now)
    contact.attributes = merged
    contact.list_ids |= list_ids
    contact.modified_at = now
    contact.ext_id = body.get("ext_id", contact.ext_id)
    contact.email_blacklisted = body.get("emailBlacklisted", contact.email_blacklisted)
    contact.sms_blacklisted = body.get("smsBlacklisted", contact.sms_blacklisted)
    if existing is not None:
        return 204, None
    state.contacts[email.lower()] = contact
    return 201, {"id": contact.id}


def get_contact(state: FakeBrevo, identifier: str, identifier_type: str | None) -> Reply:
    contact = find_contact(state, identifier, identifier_type, phone_ok=True)
    if contact is None:
        raise BrevoError(404, "document_not_found", "Contact does not exist")
    return 200, contact.to_json()


def delete_contact(state: FakeBrevo, identifier: str, identifier_type: str | None) -> Reply:
    contact = find_contact(state, identifier, identifier_type)
    if contact is None:
        raise BrevoError(404, "document_not_found", "Contact does not exist")
    del state.contacts[contact.email.lower()]
    return 204, None


def update_contact(
    state: FakeBrevo, identifier: str, identifier_type: str | None, body: dict[str, Any], seq: int
) -> Reply:
    contact = find_contact(state, identifier, identifier_type)
    if contact is None:
        raise BrevoError(404, "document_not_found", "Contact does not exist")
    attributes = body.get("attributes") or {}
    new_email = attributes.get("EMAIL")
    if isinstance(new_email, str):
        holder = state.contact(new_email)
        if holder is not None and holder is not contact:
            raise BrevoError(
                400,
                "duplicate_parameter",
                "Unable to update contact, email is already associated with another Contact",
                {"duplicate_identifiers": ["email"]},
            )
    _check_identifiers(state, contact, attributes, body.get("ext_id"), "update")
    add = _known_lists(state, body.get("listIds"))
    remove = _known_lists(state, body.get("unlinkListIds"))
    merged, ignored = merge_attributes(state, seq, contact.email, contact.attributes, attributes)
    state.ignored_attributes.extend(ignored)
    if isinstance(new_email, str) and new_email.lower() != contact.email.lower():
        del state.contacts[contact.email.lower()]
        contact.email = new_email
        state.contacts[new_email.lower()] = contact
    contact.attributes = merged
    contact.list_ids = (contact.list_ids | add) - remove
    contact.ext_id = body.get("ext_id", contact.ext_id)
    contact.email_blacklisted = body.get("emailBlacklisted", contact.email_blacklisted)
    contact.sms_blacklisted = body.get("smsBlacklisted", contact.sms_blacklisted)
    contact.modified_at = iso_now(state.clock)
    return 204, None


def change_list_members(
    state: FakeBrevo, list_id: int, body: dict[str, Any], *, add: bool
) -> Reply:
    if list_id not in state.lists:
        raise BrevoError(404, "document_not_found", "List ID does not exist")
    if not add and body.get("all"):
        members = [c for c in state.contacts.values() if list_id in c.list_ids]
        for member in members:
            member.list_ids.discard(list_id)
        return 201, {"contacts": {"total": len(members), "processId": state.next_seq()}}
    key = next(k for k in ("emails", "ids", "extIds") if k in body)
    kind = {"emails": "email_id", "ids": "contact_id", "extIds": "ext_id"}[key]
    success: list[Any] = []
    failure: list[Any] = []
    for item in body[key]:
        contact = find_contact(state, str(item), kind)
        if contact is None or (list_id in contact.list_ids) == add:
            failure.append(item)
            continue
        if add:
            contact.list_ids.add(list_id)
        else:
            contact.list_ids.discard(list_id)
        contact.modified_at = iso_now(state.clock)
        success.append(item)
    return 201, {"contacts": {"success": success, "failure": failure}}
