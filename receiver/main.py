"""Serve the receiver: ``calendly-brevo receiver``. aiohttp handles SIGTERM: it stops accepting,
lets in-flight requests finish within ``server.shutdown_timeout_seconds``, then closes the queue."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web

from calendly_brevo.bootstrap import Services
from calendly_brevo.calendly.subscriptions import active_signing_keys
from calendly_brevo.calendly.tokens import OAuthTokenStore
from calendly_brevo.config import Settings
from calendly_brevo.crypto import SecretBox, load_box
from calendly_brevo.errors import ConfigError
from calendly_brevo.keyring import build_keyring
from calendly_brevo.logs import REDACTOR, configure_logging, get_logger
from receiver.admin import setup_admin
from receiver.app import create_app
from receiver.console import create_console_app
from receiver.oauth import setup_oauth
from receiver.queues import open_queue


def _box(settings: Settings) -> SecretBox | None:
    """The at-rest encryption box, when one is configured (always in the embedded mode)."""
    try:
        return load_box(settings)
    except ConfigError:
        return None


def _mount_console(app: web.Application, settings: Settings, services: Services) -> None:
    app.add_subapp("/console/", create_console_app(settings, services))


def build_app(settings: Settings) -> web.Application:
    """The receiver as deployed: keys from config plus those ``webhooks install`` stored (when a
    database and an encryption key are configured), OAuth and admin routes."""
    log = get_logger("calendly_brevo.receiver")
    services = Services(settings)
    box = _box(settings)
    loader: Callable[[], Sequence[str]] | None = None
    if box is not None and (settings.storage.database_url or settings.embedded):
        sealed = box

        def loader_fn() -> Sequence[str]:
            keys = active_signing_keys(services.sessions, sealed)
            REDACTOR.add_secrets(*keys)  # stored keys are secrets too: never in a log line
            return keys

        loader = loader_fn
    elif not settings.embedded:
        log.info("stored_signing_keys_off", why="no CONNECTOR_ENCRYPTION_KEY or DATABASE_URL")
    setups: list[Callable[[web.Application], None]] = [
        lambda app: setup_admin(app, settings, services),
        lambda app: _mount_console(app, settings, services),
    ]
    if box is not None:
        store = OAuthTokenStore(services.sessions, box)
        setups.append(lambda app: setup_oauth(app, settings, store))
    app = create_app(
        settings,
        queue_factory=lambda: open_queue(settings),
        signing_keys=build_keyring(settings, loader),
        extra_setup=setups,
    )

    async def close_services(_app: web.Application) -> None:
        services.close()

    app.on_cleanup.append(close_services)
    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    configure_logging(settings)
    log = get_logger("calendly_brevo.receiver")
    app = build_app(settings)
    host = host or settings.server.host
    port = port or settings.server.port
    log.info("receiver_listening", url=f"http://{host}:{port}/webhooks/calendly")
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=settings.server.shutdown_timeout_seconds,
        access_log=None,
        print=None,
        handle_signals=True,
    )
