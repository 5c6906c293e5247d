"""doctor: check Calendly, the webhook, Brevo, Redis and the database with the plain checks of
:mod:`calendly_brevo.doctor`, and print each result with its fix (or them all as JSON)."""

from __future__ import annotations

import json
import sys

import click
import httpx

from calendly_brevo.config import Settings
from cli.commands.calendly import JSON, obj_of


@click.command()
@JSON
def doctor(as_json: bool) -> None:
    """Check Calendly, the webhook, Brevo, Redis and the database; exit 1 on any FAIL."""
    from calendly_brevo.doctor import DoctorContext, run_checks

    obj = obj_of(read_only=True)
    settings: Settings = obj.settings
    injected = getattr(obj, "http_client", None)
    http = injected or httpx.Client(timeout=15.0)

    def ping() -> bool:
        return bool(obj.redis.ping())

    try:
        ctx = DoctorContext(
            settings,
            http,
            engine_factory=lambda: obj.engine,
            sessions_factory=lambda: obj.sessions,
            redis_ping=ping if settings.storage.redis_url else None,
            redis_client=(lambda: obj.redis) if settings.storage.redis_url else None,
        )
        results = run_checks(ctx)
    finally:
        if injected is None:
            http.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "healthy": not any(r.status == "FAIL" for r in results),
                    "checks": [
                        {"name": r.name, "status": r.status, "detail": r.detail, "fix": r.fix}
                        for r in results
                    ],
                },
                indent=2,
            )
        )
        sys.exit(1 if any(r.status == "FAIL" for r in results) else 0)
    colors = {"OK": "green", "WARN": "yellow", "FAIL": "red"}
    for r in results:
        click.echo(click.style(f"{r.status:<4}", fg=colors[r.status]) + f" {r.name}: {r.detail}")
        if r.fix and r.status != "OK":
            click.echo(f"     fix: {r.fix}")
    if any(r.status == "FAIL" for r in results):
        sys.exit(1)


COMMANDS = (doctor,)
