"""OAuth tokens: encrypted storage in ``oauth_tokens`` and a refreshing token provider.

Calendly refresh tokens are single-use: each refresh returns a new one and the old one is dead.
Two processes refreshing at once must not lose the new token, so a refresh is:

1. take the row's write lock (a no-op ``UPDATE … SET version = version``; on Postgres a row lock,
   on SQLite the database write lock) so other refreshers wait;
2. re-read the row: if ``version`` moved since we looked, someone else refreshed: use theirs;
3. call the token endpoint with the stored refresh token;
4. write the new pair with a compare-and-swap on ``version`` (``WHERE version = :seen``) and
   commit, releasing the lock.

If the lock is not effective (e.g. a database without row locks) the CAS still guarantees that a
stale writer never overwrites a newer token, and an ``invalid_grant`` makes us re-read the row
before giving up (the winner's token is there). Weakness: the HTTP call happens under the lock,
which holds SQLite's single write lock for up to the HTTP timeout every two hours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.calendly.oauth import START_PATH, refresh_grant
from calendly_brevo.config import OAuthSettings
from calendly_brevo.crypto import SecretBox
from calendly_brevo.db.models import OAuthToken
from calendly_brevo.errors import CalendlyAuthError

DEFAULT_TOKEN_ID = "calendly"  # noqa: S105 - a row id, not a secret
NO_TOKEN = (
    f"no Calendly OAuth token stored: connect Calendly at {START_PATH} "
    "(or set CALENDLY_ACCESS_TOKEN to a Personal Access Token)"
)


def _utc(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were written in UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class StoredToken:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scope: str | None
    owner_uri: str | None
    organization_uri: str | None
    version: int

    def __repr__(self) -> str:
        return (
            f"StoredToken(owner_uri={self.owner_uri!r}, expires_at={self.expires_at!r}, "
            f"version={self.version}, tokens=**********)"
        )

    def expires_within(self, seconds: float, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at - now <= timedelta(seconds=seconds)


class OAuthTokenStore:
    """Reads and writes one row of ``oauth_tokens``; the tokens are Fernet-encrypted."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        token_id: str = DEFAULT_TOKEN_ID,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.token_id = token_id
        self.now = now

    def _decode(self, row: OAuthToken) -> StoredToken:
        return StoredToken(
            access_token=self.box.decrypt(row.access_token),
            refresh_token=self.box.decrypt(row.refresh_token) if row.refresh_token else None,
            expires_at=_utc(row.expires_at),
            scope=row.scope,
            owner_uri=row.owner_uri,
            organization_uri=row.organization_uri,
            version=row.version,
        )

    def _values(self, response: dict[str, Any]) -> dict[str, Any]:
        expires_in = response.get("expires_in")
        now = self.now()
        return {
            "access_token": self.box.encrypt(str(response["access_token"])),
            "refresh_token": (
                self.box.encrypt(str(response["refresh_token"]))
                if response.get("refresh_token")
                else None
            ),
            "expires_at": now + timedelta(seconds=float(expires_in)) if expires_in else None,
            "scope": response.get("scope"),
            "owner_uri": response.get("owner"),
            "organization_uri": response.get("organization"),
            "updated_at": now,
        }

    def load(self) -> StoredToken | None:
        with self.sessions() as session:
            row = session.get(OAuthToken, self.token_id)
            return self._decode(row) if row else None

    def save(self, response: dict[str, Any]) -> StoredToken:
        """Store a token response from the authorization-code exchange (a new connection)."""
        values = self._values(response)
        with self.sessions.begin() as session:
            row = session.get(OAuthToken, self.token_id, with_for_update=True)
            if row is None:
                row = OAuthToken(id=self.token_id, version=1, **values)
                session.add(row)
            else:
                for key, value in values.items():
                    setattr(row, key, value)
                row.version += 1
            session.flush()
            return self._decode(row)

    def refresh(self, http: httpx.Client, oauth: OAuthSettings, seen_version: int) -> StoredToken:
        """Rotate the tokens unless someone already did since ``seen_version`` (see module doc)."""
        with self.sessions.begin() as session:
            session.execute(
                update(OAuthToken)
                .where(OAuthToken.id == self.token_id)
                .values(version=OAuthToken.version)
            )
            row = session.scalars(select(OAuthToken).where(OAuthToken.id == self.token_id)).first()
            if row is None:
                raise CalendlyAuthError(NO_TOKEN)
            current = self._decode(row)
            if current.version != seen_version:
                return current
            if not current.refresh_token:
                raise CalendlyAuthError(f"the stored OAuth token has no refresh token: {NO_TOKEN}")
            try:
                response = refresh_grant(http, oauth, current.refresh_token)
            except CalendlyAuthError:
                session.rollback()
                latest = self.load()
                if latest is not None and latest.version != seen_version:
                    return latest
                raise
            values = self._values(response)
            if values["refresh_token"] is None:  # keep the old one if none was returned
                values["refresh_token"] = row.refresh_token
            result = session.execute(
                update(OAuthToken)
                .where(OAuthToken.id == self.token_id, OAuthToken.version == seen_version)
                .values(version=seen_version + 1, **values)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 1) != 1:  # pragma: no cover - needs a lock-less db
                session.rollback()
                latest = self.load()
                if latest is None:
                    raise CalendlyAuthError(NO_TOKEN)
                return latest
        stored = self.load()
        if stored is None:  # pragma: no cover - deleted concurrently
            raise CalendlyAuthError(NO_TOKEN)
        return stored

    def delete(self) -> None:
        with self.sessions.begin() as session:
            row = session.get(OAuthToken, self.token_id)
            if row is not None:
                session.delete(row)


class OAuthTokenProvider:
    """A :class:`~calendly_brevo.calendly.client.TokenProvider` backed by the store.

    Refreshes ``skew_seconds`` before expiry, and once when Calendly rejects a token (401).
    Thread-safe within a process; the store makes it safe across processes.
    """

    def __init__(
        self,
        store: OAuthTokenStore,
        http: httpx.Client,
        oauth: OAuthSettings,
        *,
        skew_seconds: float = 300.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.http = http
        self.oauth = oauth
        self.skew_seconds = skew_seconds
        self.now = now
        self._lock = threading.Lock()
        self._current: StoredToken | None = None

    def __repr__(self) -> str:
        return "OAuthTokenProvider(**********)"

    def _loaded(self) -> StoredToken:
        current = self.store.load()
        if current is None:
            raise CalendlyAuthError(NO_TOKEN)
        return current

    def token(self) -> str:
        with self._lock:
            current = self._current
            if current is None or current.expires_within(self.skew_seconds, self.now()):
                current = self._loaded()  # another process may have refreshed already
                if current.expires_within(self.skew_seconds, self.now()):
                    current = self.store.refresh(self.http, self.oauth, current.version)
                self._current = current
            return current.access_token

    def refresh_after_401(self, rejected: str) -> str | None:
        with self._lock:
            current = self._loaded()
            if current.access_token == rejected:
                current = self.store.refresh(self.http, self.oauth, current.version)
            self._current = current
            return current.access_token if current.access_token != rejected else None
