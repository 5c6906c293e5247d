"""Typed keys of the console sub-application's state."""

from __future__ import annotations

from aiohttp import web

from calendly_brevo.bootstrap import Services
from calendly_brevo.config import Settings
from receiver.console.auth import Session

SETTINGS = web.AppKey("console_settings", Settings)
SERVICES = web.AppKey("console_services", Services)
ADMIN_TOKEN = web.AppKey("console_admin_token", str)
#: Request key: the console session of a cookie-authenticated request (None for bearer).
SESSION = "console_session"
#: Form field carrying the CSRF token.
CSRF_FIELD = "csrf"
__all__ = ["ADMIN_TOKEN", "CSRF_FIELD", "SERVICES", "SESSION", "SETTINGS", "Session"]
