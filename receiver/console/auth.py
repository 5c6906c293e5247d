"""Console sessions: the admin token, once, in a login form; then a signed cookie.

Stateless: the cookie is ``<expiry>.<nonce>.<mac>``, MAC = HMAC-SHA256 over ``expiry.nonce``
under a key derived from the admin token, so rotating the token ends every session and no
session table exists. The cookie is ``HttpOnly``, ``SameSite=Strict``, limited to ``/console/``
and ``Secure`` when the request came over HTTPS (directly or per ``X-Forwarded-Proto`` from the
ingress). Every form carries a CSRF token, HMAC of the session nonce, checked on POST; a
request with ``Authorization: Bearer <admin token>`` needs neither (scripts, tests).

Weakness, said plainly: a session cannot be revoked on its own before it expires
(``SESSION_SECONDS``); rotate the admin token to end all of them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "cb_console"
SESSION_SECONDS = 8 * 3600


def _key(admin_token: str) -> bytes:
    return hmac.new(admin_token.encode(), b"calendly-brevo console session v1", "sha256").digest()


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int

    def csrf(self, admin_token: str) -> str:
        return _mac(_key(admin_token), f"csrf.{self.nonce}")


def token_matches(admin_token: str, given: str) -> bool:
    return bool(admin_token) and hmac.compare_digest(given.strip().encode(), admin_token.encode())


def new_session(admin_token: str, now: float | None = None) -> tuple[Session, str]:
    """A session and its cookie value."""
    expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
    nonce = secrets.token_urlsafe(16)
    body = f"{expires}.{nonce}"
    return Session(nonce, expires), f"{body}.{_mac(_key(admin_token), body)}"


def read_session(admin_token: str, cookie: str | None, now: float | None = None) -> Session | None:
    """The session a cookie proves, or ``None`` (absent, forged, expired, other token)."""
    if not cookie or not admin_token:
        return None
    expires_text, _, rest = cookie.partition(".")
    nonce, _, mac = rest.rpartition(".")
    if not expires_text.isdigit() or not nonce:
        return None
    expected = _mac(_key(admin_token), f"{expires_text}.{nonce}")
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        return None
    if int(expires_text) <= (now if now is not None else time.time()):
        return None
    return Session(nonce, int(expires_text))


def csrf_ok(admin_token: str, session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(
        str(given).encode(), session.csrf(admin_token).encode()
    )
