from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from calendly_brevo.bootstrap import Services
from calendly_brevo.calendly.client import CalendlyClient
from calendly_brevo.calendly.links import resolve_event_type
from calendly_brevo.errors import CalendlyNotFound
from cli.commands.calendly import links
from receiver.admin import setup_admin
from tests.fakes.calendly import FakeCalendlyServer


class FakeBrevoContacts:
    def __init__(self) -> None:
        self.upserts: list[tuple[str, dict[str, Any], tuple[int, ...]]] = []

    def upsert_contact(
        self, email: str, attributes: dict[str, Any], list_ids: Sequence[int] = ()
    ) -> None:
        self.upserts.append((email, attributes, tuple(list_ids)))


def test_links_create_with_emails_writes_each_link_into_the_brevo_attribute(
    cal: FakeCalendlyServer, services: Services, tmp_path: Path
) -> None:
    brevo = FakeBrevoContacts()
    services.brevo_client = brevo  # type: ignore[attr-defined]
    emails_file = tmp_path / "emails.csv"
    emails_file.write_text("email,name\nc@example.com,C\n# skipped\n")
    result = CliRunner().invoke(
        links,
        [
            "create",
            "--event-type",
            "demo",
            "--email",
            "a@example.com",
            "--email",
            "b@example.com",
            "--emails-file",
            str(emails_file),
        ],
        obj=services,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    demo = next(et for et in cal.state.event_types if et["slug"] == "demo")
    assert len(cal.state.scheduling_links) == 3
    assert all(link["owner"] == demo["uri"] for link in cal.state.scheduling_links)
    urls = [link["booking_url"] for link in cal.state.scheduling_links]
    assert brevo.upserts == [
        ("a@example.com", {"CALENDLY_BOOKING_LINK": urls[0]}, ()),
        ("b@example.com", {"CALENDLY_BOOKING_LINK": urls[1]}, ()),
        ("c@example.com", {"CALENDLY_BOOKING_LINK": urls[2]}, ()),
    ]
    assert urls[0] in result.output


def test_links_create_without_emails_prints_one_single_use_link(
    cal: FakeCalendlyServer, services: Services
) -> None:
    result = CliRunner().invoke(
        links, ["create", "--event-type", "Discovery Call", "--attribute", "BOOKING"], obj=services
    )
    assert result.exit_code == 0, result.output
    (link,) = cal.state.scheduling_links
    assert link["booking_url"] in result.output


def test_event_types_resolve_by_uri_mapping_key_slug_or_name(
    cal: FakeCalendlyServer, services: Services, client: CalendlyClient
) -> None:
    demo = next(et for et in cal.state.event_types if et["slug"] == "demo")
    settings = services.settings
    assert resolve_event_type(client, settings, demo["uri"]) == demo["uri"]
    assert resolve_event_type(client, settings, "DEMO") == demo["uri"]
    assert resolve_event_type(client, settings, "product demo") == demo["uri"]
    with pytest.raises(CalendlyNotFound, match="discovery-call"):
        resolve_event_type(client, settings, "nope")


async def admin_client(aiohttp_client: Any, services: Services) -> Any:
    app = web.Application()
    setup_admin(app, services.settings, services)
    return await aiohttp_client(app)


async def test_the_admin_api_is_absent_without_an_admin_token(
    aiohttp_client: Any, services: Services
) -> None:
    client = await admin_client(aiohttp_client, services)
    resp = await client.post("/admin/scheduling-links", json={"event_type": "demo"})
    assert resp.status == 404
    assert "CONNECTOR_ADMIN_TOKEN" in (await resp.json())["error"]


async def test_the_admin_api_needs_the_bearer_token_and_creates_a_link(
    aiohttp_client: Any, cal: FakeCalendlyServer, make_services: Any
) -> None:
    services = make_services(CONNECTOR_ADMIN_TOKEN="admin-secret-token")
    brevo = FakeBrevoContacts()
    services.brevo_client = brevo
    client = await admin_client(aiohttp_client, services)
    body = {"event_type": "demo", "email": "a@example.com"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "admin-secret-token"}):
        resp = await client.post("/admin/scheduling-links", json=body, headers=headers)
        assert resp.status == 401
    assert cal.state.scheduling_links == []

    auth = {"Authorization": "Bearer admin-secret-token"}
    resp = await client.post("/admin/scheduling-links", json=body, headers=auth)
    assert resp.status == 201, await resp.text()
    data = await resp.json()
    assert data["booking_url"] == cal.state.scheduling_links[0]["booking_url"]
    assert brevo.upserts == [("a@example.com", {"CALENDLY_BOOKING_LINK": data["booking_url"]}, ())]
    bad = await client.post("/admin/scheduling-links", json={"email": "x"}, headers=auth)
    assert bad.status == 400
    status = await client.get("/admin/status", headers=auth)
    assert status.status == 200 and "queue" in await status.json()


async def test_a_receiver_without_the_brevo_key_returns_the_link_and_says_it_was_not_written(
    aiohttp_client: Any, cal: FakeCalendlyServer, make_services: Any
) -> None:
    """On Kubernetes the receiver gets no BREVO_API_KEY (issue 13 point 11)."""
    services = make_services(CONNECTOR_ADMIN_TOKEN="admin-secret-token")
    assert services.settings.dry_run  # no Brevo key here
    client = await admin_client(aiohttp_client, services)
    auth = {"Authorization": "Bearer admin-secret-token"}
    body = {"event_type": "demo", "email": "a@example.com"}
    resp = await client.post("/admin/scheduling-links", json=body, headers=auth)
    assert resp.status == 201, await resp.text()
    data = await resp.json()
    assert data["booking_url"] == cal.state.scheduling_links[0]["booking_url"]
    assert data["attribute"] is None
    assert "BREVO_API_KEY" in data["not_written"] and "links create --email" in data["not_written"]
