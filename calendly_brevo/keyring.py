"""Which webhook signing keys the receiver accepts.

Keys come from, in order: the config / ``CALENDLY_WEBHOOK_SIGNING_KEY`` (plus
``webhook.previous_signing_keys`` during a rotation), the keys ``webhooks install`` stored
(encrypted) in the database when the receiver can reach one, and — only in the embedded dry-run
demo with nothing configured — a local development key kept in ``<data_dir>/dev-signing-key``
so ``calendly-brevo simulate`` works out of the box.

Which key verified a delivery is stored with it as a label (:mod:`calendly_brevo.key_labels`);
the development key is :mod:`calendly_brevo.dev_signing_key`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from calendly_brevo.config import Settings
from calendly_brevo.dev_signing_key import ensure_dev_key
from calendly_brevo.errors import ConfigError
from calendly_brevo.key_labels import config_key_names, key_label
from calendly_brevo.logs import get_logger

log = get_logger("calendly_brevo.keyring")


class KeyRing:
    """A callable the receiver asks for the current keys; database keys refresh every 30 s.

    A call never touches the database: when a refresh is due it starts one in a background
    thread (at most one at a time) and answers from the last good set, so a stalled database
    cannot freeze a webhook request. Only :meth:`prime` (at start-up) waits, for ``timeout``.
    """

    def __init__(
        self,
        static: Sequence[str],
        loader: Callable[[], Sequence[str]] | None = None,
        refresh_seconds: float = 30.0,
    ) -> None:
        self.static = tuple(static)
        self.loader = loader
        self.refresh_seconds = refresh_seconds
        self._loaded: tuple[str, ...] = ()
        self._at = -1e9
        self._keys = self.static
        self._refreshing = threading.Lock()
        #: Each static key's place, for :meth:`label` (see :func:`config_key_names`).
        self.names: dict[str, str] = {}

    def label(self, key: str) -> str:
        """The non-secret label of one of this ring's keys (:func:`key_label`)."""
        return key_label(key, self.names)

    def _refresh(self) -> None:
        try:
            assert self.loader is not None
            self._loaded = tuple(self.loader())
            self._keys = tuple(dict.fromkeys(self.static + self._loaded))
        except Exception as exc:  # keep the last good set; the database may be briefly away
            log.warning("signing_keys_refresh_failed", error=f"{type(exc).__name__}")
        finally:
            self._refreshing.release()

    def _start_refresh(self) -> threading.Thread | None:
        if not self._refreshing.acquire(blocking=False):
            return None  # one is already running (perhaps stuck on a stalled database)
        self._at = time.monotonic()
        thread = threading.Thread(target=self._refresh, name="signing-keys", daemon=True)
        thread.start()
        return thread

    def prime(self, timeout: float = 10.0) -> Sequence[str]:
        """Load once, waiting at most ``timeout`` seconds (start-up)."""
        if self.loader is not None:
            thread = self._start_refresh()
            if thread is not None:
                thread.join(timeout)
        return self._keys

    def __call__(self) -> Sequence[str]:
        if self.loader is not None and time.monotonic() - self._at > self.refresh_seconds:
            self._start_refresh()
        return self._keys


def build_keyring(settings: Settings, loader: Callable[[], Sequence[str]] | None = None) -> KeyRing:
    keys = list(settings.calendly.webhook.keys)
    ring = KeyRing(keys, loader)
    ring.names = config_key_names(settings.calendly.webhook)
    if not ring.prime():
        if settings.embedded and settings.dry_run:
            dev = ensure_dev_key(settings)
            ring = KeyRing([dev], loader)
            ring.names = {dev: "dev"}
        else:
            raise ConfigError(
                "connectors.calendly.webhook.signing_key",
                "no webhook signing key: every webhook would be refused",
                "set CALENDLY_WEBHOOK_SIGNING_KEY, or run `calendly-brevo webhooks install`",
            )
    return ring
