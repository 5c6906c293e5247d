"""A small operator console at ``/console/``: server-rendered HTML, no JavaScript needed.

Pages: overview (health, throughput, lag, queue, dead letters, subscription, dry run), contact
search (one person's trace), dead letters (show, replay after a confirmation) and the webhook
subscription (check, repair). Behind the admin token (:mod:`receiver.console.auth`); with no
admin token configured it does not exist (404), like the admin API. Every value is escaped by
Jinja2's autoescape; responses carry a strict Content-Security-Policy and ``no-store``.

:func:`create_console_app` returns a sub-application; the receiver mounts it on its admin
listener with ``app.add_subapp("/console/", …)``. Blocking store calls run in threads.
"""

from __future__ import annotations

from importlib import resources

import aiohttp_jinja2
import jinja2
from aiohttp import web

from calendly_brevo.bootstrap import Services
from calendly_brevo.config import Settings
from receiver.console import views
from receiver.console.guard import guard_middleware, headers_middleware
from receiver.console.keys import ADMIN_TOKEN, SERVICES, SETTINGS


def create_console_app(settings: Settings, services: Services) -> web.Application:
    token = settings.security.admin_token
    app = web.Application(middlewares=[headers_middleware, guard_middleware])
    app[SETTINGS] = settings
    app[SERVICES] = services
    app[ADMIN_TOKEN] = token.get_secret_value() if token else ""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("receiver.console", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    static = resources.files("receiver.console").joinpath("static")
    app.router.add_static("/static/", str(static), name="static")
    views.add_routes(app)
    return app
