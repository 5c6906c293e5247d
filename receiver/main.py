"""Serve the receiver: ``calendly-brevo receiver``, two listeners in one process.

- the public port (``server.port``, ``PORT``): ``POST /webhooks/calendly``, the OAuth callback,
  ``/healthz`` and ``/readyz``; the only port an Ingress or proxy should forward;
- the admin port (``server.admin_port``, ``ADMIN_PORT``, default 8001): ``/admin/*``, the OAuth
  start and ``/metrics``; for the operator and Prometheus, never the internet.

On SIGTERM both stop accepting, let in-flight requests finish within
``server.shutdown_timeout_seconds``, then the queue and the database engine close.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from calendly_brevo.bootstrap import Services
from calendly_brevo.calendly.subscription_store import active_signing_keys
from calendly_brevo.calendly.tokens import OAuthTokenStore
from calendly_brevo.config import Settings
from calendly_brevo.crypto import SecretBox
from calendly_brevo.encryption_key import load_box
from calendly_brevo.errors import ConfigError
from calendly_brevo.keyring import build_keyring
from calendly_brevo.logs import REDACTOR, configure_logging, get_logger
from receiver.admin import setup_admin
from receiver.app import create_admin_app, create_app
from receiver.console import create_console_app
from receiver.oauth import setup_oauth_callback, setup_oauth_start
from receiver.queues import open_queue


def _box(settings: Settings) -> SecretBox | None:
    """The at-rest encryption box, when one is configured (always in the embedded mode)."""
    try:
        return load_box(settings)
    except ConfigError:
        return None


def _mount_console(app: web.Application, settings: Settings, services: Services) -> None:
    app.add_subapp("/console/", create_console_app(settings, services))


@dataclass
class ReceiverApps:
    """The two applications of one receiver and the services they share."""

    public: web.Application
    admin: web.Application
    services: Services


def build_apps(settings: Settings) -> ReceiverApps:
    """The receiver as deployed: keys from config plus those ``webhooks install`` stored (when a
    database and an encryption key are configured); the OAuth callback on the public app, the
    admin API and the OAuth start on the admin app."""
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
    public_setups: list[Callable[[web.Application], None]] = []
    admin_setups: list[Callable[[web.Application], None]] = [
        lambda app: setup_admin(app, settings, services),
        lambda app: _mount_console(app, settings, services),
    ]
    if box is not None:
        store = OAuthTokenStore(services.sessions, box)
        public_setups.append(lambda app: setup_oauth_callback(app, settings, store))
        admin_setups.append(lambda app: setup_oauth_start(app, settings, store))
    ring = build_keyring(settings, loader)
    public = create_app(
        settings,
        queue_factory=lambda: open_queue(settings),
        signing_keys=ring,
        key_label=ring.label,
        extra_setup=public_setups,
    )
    admin = create_admin_app(settings, extra_setup=admin_setups)
    return ReceiverApps(public=public, admin=admin, services=services)


@dataclass
class Listening:
    """Both listeners, started. ``port`` and ``admin_port`` are the bound ones (0 → chosen)."""

    runners: list[web.AppRunner]
    services: Services
    port: int = 0
    admin_port: int = 0
    urls: dict[str, str] = field(default_factory=dict)

    async def close(self) -> None:
        """Public first (no new webhooks), then admin; then the shared services."""
        for runner in self.runners:
            await runner.cleanup()
        self.services.close()


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return 0


async def listen(
    apps: ReceiverApps,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    admin_port: int | None = None,
) -> Listening:
    """Start the public and the admin listener (the embedded ``run`` uses this too)."""
    server = settings.server
    host = host or server.host
    port = server.port if port is None else port
    admin_port = server.admin_port if admin_port is None else admin_port
    if port == admin_port and port != 0:
        raise ConfigError(
            "server.admin_port",
            f"is the public port {port}",
            "give the admin listener its own port (ADMIN_PORT, default 8001)",
        )
    listening = Listening(runners=[], services=apps.services)
    timeout = server.shutdown_timeout_seconds
    for app, where, at in (
        (apps.public, host, port),
        (apps.admin, server.admin_host or host, admin_port),
    ):
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=timeout)
        await runner.setup()
        listening.runners.append(runner)
        await web.TCPSite(runner, where, at).start()
    listening.port = _bound_port(listening.runners[0])
    listening.admin_port = _bound_port(listening.runners[1])
    admin_host = server.admin_host or host
    listening.urls = {
        "webhooks": f"http://{host}:{listening.port}/webhooks/calendly",
        "admin": f"http://{admin_host}:{listening.admin_port}",
    }
    return listening


async def _serve(settings: Settings, host: str | None, port: int | None, admin: int | None) -> None:
    log = get_logger("calendly_brevo.receiver")
    listening = await listen(build_apps(settings), settings, host=host, port=port, admin_port=admin)
    log.info(
        "receiver_listening",
        url=listening.urls["webhooks"],
        admin_url=listening.urls["admin"],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("receiver_stopping")
        await listening.close()


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    admin_port: int | None = None,
) -> None:
    configure_logging(settings)
    asyncio.run(_serve(settings, host, port, admin_port))
