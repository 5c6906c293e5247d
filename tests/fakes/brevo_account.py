"""Lists, attributes and the account, as plain functions over ``FakeBrevo``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.fakes.brevo_ops import BrevoError, Reply
from tests.fakes.brevo_state import FakeBrevo


def _list_json(state: FakeBrevo, list_id: int) -> dict[str, Any]:
    members = [c for c in state.contacts.values() if list_id in c.list_ids]
    return {
        "id": list_id,
        "name": state.lists[list_id],
        "totalBlacklisted": sum(1 for c in members if c.email_blacklisted),
        "totalSubscribers": sum(1 for c in members if not c.email_blacklisted),
        "uniqueSubscribers": len(members),
        "folderId": state.list_folders.get(list_id, 1),
    }


def get_lists(state: FakeBrevo, query: Mapping[str, str]) -> Reply:
    limit, offset = int(query.get("limit", 10)), int(query.get("offset", 0))
    ids = sorted(state.lists, reverse=query.get("sort", "desc") == "desc")
    page = [_list_json(state, i) for i in ids[offset : offset + limit]]
    return 200, {"lists": page, "count": len(ids)}


def get_list(state: FakeBrevo, list_id: int) -> Reply:
    if list_id not in state.lists:
        raise BrevoError(404, "document_not_found", "List ID does not exist")
    return 200, {**_list_json(state, list_id), "createdAt": state.created_at, "dynamicList": False}


def create_list(state: FakeBrevo, body: dict[str, Any]) -> Reply:
    return 201, {"id": state.add_list(body["name"], folder_id=body["folderId"])}


def get_attributes(state: FakeBrevo) -> Reply:
    return 200, {"attributes": [a.to_json() for a in state.attributes.values()]}


def create_attribute(state: FakeBrevo, category: str, name: str, body: dict[str, Any]) -> Reply:
    if name in state.attributes:
        raise BrevoError(400, "duplicate_parameter", "Attribute name already exists")
    state.add_attribute(name, body.get("type", "text"), category)
    return 201, None


def get_account(state: FakeBrevo) -> Reply:
    return 200, {
        "email": "owner@fake-brevo.invalid",
        "firstName": "Fake",
        "lastName": "Brevo",
        "companyName": "Fake Brevo",
        "address": {
            "street": "1 Test Street",
            "city": "Testville",
            "zipCode": "0000",
            "country": "Nowhere",
        },
        "plan": [{"type": "free", "creditsType": "sendLimit", "credits": 300.0}],
        "relay": {
            "enabled": False,
            "data": {
                "userName": "owner@fake-brevo.invalid",
                "relay": "smtp-relay.fake-brevo.invalid",
                "port": 587,
            },
        },
        "marketingAutomation": {"enabled": True, "key": "fake-ma-key"},
    }
