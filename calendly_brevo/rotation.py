"""Re-encrypt every stored secret under the first configured encryption key.

A rotation of ``CONNECTOR_ENCRYPTION_KEY``: put the new key first and keep the old one after it
(``new,old``), run ``calendly-brevo keys rotate``, then drop the old key. Covered: the OAuth
access and refresh tokens (``oauth_tokens``) and the webhook signing keys (``signing_keys``),
active or retired. One transaction: a value no configured key can read stops the rotation
before anything is written, so a half-rotated store cannot happen.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from calendly_brevo.crypto import SecretBox
from calendly_brevo.db.models import OAuthToken, SigningKey


@dataclass(frozen=True)
class Rotation:
    oauth_tokens: int
    signing_keys: int

    def as_dict(self) -> dict[str, int]:
        return {"oauth_tokens": self.oauth_tokens, "signing_keys": self.signing_keys}


def rotate_secrets(sessions: sessionmaker[Session], box: SecretBox) -> Rotation:
    """Re-encrypt every stored secret with ``box``'s first key; counts the rows rewritten."""
    with sessions.begin() as session:
        tokens = session.scalars(select(OAuthToken).with_for_update()).all()
        for row in tokens:
            row.access_token = box.rotate(row.access_token)
            if row.refresh_token:
                row.refresh_token = box.rotate(row.refresh_token)
        keys = session.scalars(select(SigningKey).with_for_update()).all()
        for key in keys:
            key.key = box.rotate(key.key)
        return Rotation(oauth_tokens=len(tokens), signing_keys=len(keys))
