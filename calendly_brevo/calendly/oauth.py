"""OAuth 2.0 authorization code flow with PKCE (S256) against ``auth.calendly.com``.

Plain functions over plain data; the aiohttp routes live in ``receiver/oauth.py`` and the token
storage and refresh in :mod:`calendly_brevo.calendly.tokens`.

The pending authorization (``state`` + PKCE ``code_verifier``) is kept in a short-lived cookie
encrypted with the connector's Fernet key (:class:`calendly_brevo.crypto.SecretBox`): no server
state, so a start on one receiver replica and a callback on another still match, and the verifier
is never readable by the browser. Fernet's timestamp gives the expiry (:data:`PENDING_TTL`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from calendly_brevo.config import OAuthSettings, Settings
from calendly_brevo.crypto import SecretBox
from calendly_brevo.errors import (
    CalendlyAuthError,
    CalendlyPermanentError,
    CalendlyTransientError,
    ConfigError,
)

#: Calendly's authorization codes live 10 minutes; a pending authorization no longer.
PENDING_TTL = 600
CALLBACK_PATH = "/oauth/calendly/callback"
START_PATH = "/oauth/calendly/start"


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for S256 (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def redirect_uri(settings: Settings) -> str:
    oauth = settings.calendly.oauth
    if oauth.redirect_uri:
        return oauth.redirect_uri
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/") + CALLBACK_PATH
    raise ConfigError(
        "connectors.calendly.oauth.redirect_uri",
        "is needed for OAuth",
        f"set CALENDLY_REDIRECT_URI (or PUBLIC_URL; the callback is {CALLBACK_PATH})",
    )


def oauth_configured(settings: Settings) -> bool:
    return bool(settings.calendly.oauth.client_id)


@dataclass(frozen=True)
class Pending:
    state: str
    verifier: str
    #: The operator asked to replace the connected Calendly account (``--replace``).
    replace: bool = False

    def __repr__(self) -> str:
        return "Pending(**********)"


def begin(settings: Settings, box: SecretBox, *, replace: bool = False) -> tuple[str, bytes]:
    """Start an authorization: the URL to send the browser to and the sealed cookie value."""
    oauth = settings.calendly.oauth
    if not oauth.client_id:
        raise ConfigError("connectors.calendly.oauth.client_id", "is not set", "CALENDLY_CLIENT_ID")
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    query = {
        "client_id": oauth.client_id,
        "redirect_uri": redirect_uri(settings),
        "response_type": "code",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
    }
    if oauth.scopes:
        query["scope"] = " ".join(oauth.scopes)
    url = f"{oauth.auth_url.rstrip('/')}/oauth/authorize?{urlencode(query)}"
    sealed = box.encrypt(json.dumps({"state": state, "verifier": verifier, "replace": replace}))
    return url, sealed


def check_state(box: SecretBox, sealed: str | None, state: str | None) -> Pending | None:
    """The pending authorization if the cookie is ours, fresh and matches ``state``; else None."""
    if not sealed or not state:
        return None
    try:
        data = json.loads(box.decrypt(sealed.encode("ascii"), ttl=PENDING_TTL))
    except (ConfigError, ValueError, UnicodeEncodeError):
        return None
    expected = str(data.get("state", ""))
    if not expected or not hmac.compare_digest(expected.encode(), state.encode()):
        return None
    return Pending(
        state=expected, verifier=str(data["verifier"]), replace=data.get("replace") is True
    )


def _client_auth(oauth: OAuthSettings) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """Web apps authenticate with HTTP Basic; public (no secret) clients send client_id."""
    secret = oauth.client_secret.get_secret_value() if oauth.client_secret else ""
    if secret:
        return {}, httpx.BasicAuth(oauth.client_id or "", secret)
    return {"client_id": oauth.client_id or ""}, None


def token_request(http: httpx.Client, oauth: OAuthSettings, form: dict[str, str]) -> dict[str, Any]:
    """POST ``{auth_url}/oauth/token``; errors become Calendly errors with the fix."""
    extra, auth = _client_auth(oauth)
    url = f"{oauth.auth_url.rstrip('/')}/oauth/token"
    try:
        resp = http.post(url, data={**form, **extra}, auth=auth or httpx.USE_CLIENT_DEFAULT)
    except httpx.TransportError as exc:
        raise CalendlyTransientError(
            f"Calendly OAuth token endpoint: {type(exc).__name__}"
        ) from exc
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
        return body
    if resp.status_code == 429 or resp.status_code >= 500:
        raise CalendlyTransientError(f"Calendly OAuth token endpoint answered {resp.status_code}")
    error = body.get("error", "") if isinstance(body, dict) else ""
    desc = body.get("error_description", "") if isinstance(body, dict) else ""
    if error in ("invalid_grant", "invalid_client", "unauthorized_client") or resp.status_code in (
        400,
        401,
    ):
        raise CalendlyAuthError(
            f"Calendly OAuth {resp.status_code} {error or 'error'}"
            f"{': ' + desc if desc else ''}: re-run the OAuth flow at {START_PATH} "
            "(a refresh token is single-use; check CALENDLY_CLIENT_ID/SECRET)"
        )
    raise CalendlyPermanentError(f"Calendly OAuth token endpoint answered {resp.status_code}")


def exchange_code(
    http: httpx.Client, settings: Settings, code: str, pending: Pending
) -> dict[str, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(settings),
        "code_verifier": pending.verifier,
    }
    return token_request(http, settings.calendly.oauth, form)


def refresh_grant(http: httpx.Client, oauth: OAuthSettings, refresh_token: str) -> dict[str, Any]:
    return token_request(
        http, oauth, {"grant_type": "refresh_token", "refresh_token": refresh_token}
    )
