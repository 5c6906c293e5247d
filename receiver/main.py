"""Serve the receiver: ``calendly-brevo receiver``. aiohttp handles SIGTERM: it stops accepting,
lets in-flight requests finish within ``server.shutdown_timeout_seconds``, then closes the queue."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web

from calendly_brevo.config import Settings
from calendly_brevo.keyring import build_keyring
from calendly_brevo.logs import configure_logging, get_logger
from receiver.app import create_app
from receiver.queues import open_queue


def signing_key_loader(settings: Settings) -> Callable[[], Sequence[str]] | None:
    """Keys stored by ``webhooks install``, when a database is configured (or embedded)."""
    try:
        from calendly_brevo.calendly.subscriptions import load_signing_keys
    except ImportError:  # pragma: no cover
        return None
    from calendly_brevo.bootstrap import Services

    services = Services(settings)
    return lambda: load_signing_keys(services)


def route_setups(settings: Settings) -> list[Callable[[web.Application], None]]:
    setups: list[Callable[[web.Application], None]] = []
    try:
        from receiver.admin import setup_admin
        from receiver.oauth import setup_oauth
    except ImportError:  # pragma: no cover
        return setups
    from calendly_brevo.bootstrap import Services

    services = Services(settings)
    setups.append(lambda app: setup_oauth(app, settings, services))
    setups.append(lambda app: setup_admin(app, settings, services))
    return setups


def build_app(settings: Settings) -> web.Application:
    loader = (
        signing_key_loader(settings) if settings.storage.database_url or settings.embedded else None
    )
    return create_app(
        settings,
        queue_factory=lambda: open_queue(settings),
        signing_keys=build_keyring(settings, loader),
        extra_setup=route_setups(settings),
    )


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
