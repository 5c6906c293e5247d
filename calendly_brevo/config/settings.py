"""The connector's own sections (``server``, ``worker``, ``storage``, ``security``) and
:class:`Settings`, the one typed object built at the edge (:mod:`calendly_brevo.config.loading`)
and passed down; the environment variables that override its keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator

from calendly_brevo.config.base import PLACEHOLDERS, Strict
from calendly_brevo.config.brevo import BrevoSettings
from calendly_brevo.config.calendly import CalendlySettings, Connectors, FieldMapping
from calendly_brevo.config.rules import Rules
from calendly_brevo.errors import ConfigError


class ServerSettings(Strict):
    host: str = "127.0.0.1"
    #: The public listener: ``/webhooks/calendly``, the OAuth callback, ``/healthz``, ``/readyz``.
    port: int = Field(default=8080, ge=1, le=65535)
    #: The admin listener: ``/admin/*``, the OAuth start and ``/metrics``. Keep it off the
    #: internet (see SECURITY.md). 0 lets the system pick a free port (tests).
    admin_port: int = Field(default=8001, ge=0, le=65535)
    #: The admin listener's address; the public ``host`` when unset.
    admin_host: str | None = None
    public_url: str | None = None
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _ports_differ(self) -> ServerSettings:
        if self.admin_port == self.port:
            raise ValueError(
                f"admin_port {self.admin_port} is the public port: the admin API, the OAuth start "
                "and /metrics need a port of their own (ADMIN_PORT, default 8001)"
            )
        return self


class WorkerSettings(Strict):
    processes: int = Field(default=1, ge=1, le=64)
    threads: int = Field(default=4, ge=1, le=256)
    #: Events taken off the queue together are handled in one pass of at most this many: one
    #: statement and one Brevo request per step for all of them (``worker/group.py``). A batch
    #: thread takes up to this many at once, so a process holds up to ``batch_threads + 1``
    #: times this many messages. 1: off.
    group_max: int = Field(default=32, ge=1, le=500)
    #: Threads per process that take such batches (``worker/consumer.py``), beside ``threads``
    #: for the one-event path (retries, routing forms, …). 0: no batches, no group pass.
    batch_threads: int = Field(default=2, ge=0, le=32)
    shutdown_timeout_seconds: float = Field(default=25.0, gt=0)
    max_retries: int = Field(default=12, ge=0)
    min_backoff_seconds: float = Field(default=1.0, gt=0)
    max_backoff_seconds: float = Field(default=300.0, gt=0)
    max_age_seconds: int = Field(default=24 * 3600, gt=0)
    metrics_port: int = Field(default=9191, ge=0, le=65535)
    #: Redis broker: a worker silent this long is dead and its unacked messages are requeued.
    heartbeat_timeout_seconds: float = Field(default=60.0, ge=1)
    #: Redis broker: commands per million that also run queue maintenance (dead-worker requeue).
    maintenance_chance: int = Field(default=1000, ge=1, le=1_000_000)
    #: Redis broker: the supervisor (or ``run``) also runs queue maintenance this often, one
    #: process per deployment per interval, so a killed worker's messages are requeued within
    #: ``heartbeat_timeout_seconds + maintenance_interval_seconds`` at any traffic level.
    maintenance_interval_seconds: float = Field(default=15.0, ge=0.5, le=300)


class StorageSettings(Strict):
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path("data")
    #: Processed-event payloads older than this are pruned (PII does not pile up).
    payload_retention_days: int = Field(default=30, ge=0)
    #: Postgres: give up connecting after this long, and cancel any statement running longer,
    #: so a stalled database fails a call instead of freezing it.
    db_connect_timeout_seconds: int = Field(default=5, ge=1)
    db_statement_timeout_seconds: float = Field(default=30.0, gt=0)


class SecuritySettings(Strict):
    admin_token: SecretStr | None = None
    #: Fernet key(s) that encrypt OAuth tokens and signing keys at rest (first one encrypts).
    encryption_key: SecretStr | None = None


class Settings(Strict):
    connectors: Connectors = Connectors()
    field_mapping: FieldMapping = FieldMapping()
    brevo: BrevoSettings = BrevoSettings()
    server: ServerSettings = ServerSettings()
    worker: WorkerSettings = WorkerSettings()
    storage: StorageSettings = StorageSettings()
    security: SecuritySettings = SecuritySettings()

    # -- derived views ---------------------------------------------------------------------------
    @property
    def calendly(self) -> CalendlySettings:
        return self.connectors.calendly

    @property
    def mapping(self) -> FieldMapping:
        return self.connectors.calendly.field_mapping or self.field_mapping

    @property
    def rules(self) -> Rules:
        """The narrow part the business rules read (:mod:`calendly_brevo.config.rules`). Built
        on each access (a ``cached_property`` would survive ``model_copy(update=…)`` stale)."""
        cal = self.calendly
        return Rules(
            enabled=cal.enabled,
            sync=cal.sync,
            event_mapping=cal.event_mapping,
            fields=self.mapping,
            list_moves=self.brevo.list_moves,
            events=self.brevo.events,
            upsert_routing_form_submitters=self.brevo.upsert_routing_form_submitters,
            sms_fallback_attribute=self.brevo.sms_fallback_attribute,
        )

    @property
    def embedded(self) -> bool:
        """No Redis configured: one process, SQLite queue and store."""
        return not self.storage.redis_url

    @property
    def dry_run(self) -> bool:
        """``brevo.dry_run``, or no Brevo key: the worker logs the calls it would make."""
        return self.brevo.runs_dry

    def require_brevo(self) -> None:
        """Before calling Brevo for real: a key, unless a dry run was asked for.

        Embedded mode stays dry without a key (``make run`` on a laptop); anywhere else a missing
        key is a mistake (a Secret without it) that would run dry while dashboards stay green.
        """
        if self.brevo.dry_run is True:
            return
        if self.embedded and self.brevo.dry_run is None:
            return
        where = "brevo.dry_run is false" if self.brevo.dry_run is False else "REDIS_URL is set"
        key = self.brevo.api_key
        if key is None or not key.get_secret_value():
            raise ConfigError(
                "brevo.api_key",
                f"is required here but not set ({where})",
                "set BREVO_API_KEY, or BREVO_DRY_RUN=true to log the Brevo calls without sending",
            )
        self.require("brevo.api_key")

    @property
    def database_url(self) -> str:
        url = self.storage.database_url
        if not url:
            return f"sqlite:///{(self.storage.data_dir / 'calendly-brevo.db').as_posix()}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    def require(self, *paths: str) -> None:
        """Fail fast when a secret the caller needs is missing or a placeholder."""
        for path in paths:
            value: Any = self
            for part in path.split("."):
                value = getattr(value, part)
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            env = next((k for k, p in ENV_OVERRIDES.items() if p == path), None)
            fix = f"set {env} or {path} in the config file" if env else f"set {path}"
            if not raw:
                raise ConfigError(path, "is required here but not set", fix)
            if isinstance(raw, str) and PLACEHOLDERS.match(raw.strip()):
                raise ConfigError(path, "still holds a placeholder value", fix)


#: Environment variable → dotted settings path. Applied after the file.
ENV_OVERRIDES: dict[str, str] = {
    "CALENDLY_WEBHOOK_SIGNING_KEY": "connectors.calendly.webhook.signing_key",
    "CALENDLY_ACCESS_TOKEN": "connectors.calendly.access_token",
    "CALENDLY_API_URL": "connectors.calendly.api_url",
    "CALENDLY_ORGANIZATION_URI": "connectors.calendly.organization_uri",
    "CALENDLY_CLIENT_ID": "connectors.calendly.oauth.client_id",
    "CALENDLY_CLIENT_SECRET": "connectors.calendly.oauth.client_secret",
    "CALENDLY_REDIRECT_URI": "connectors.calendly.oauth.redirect_uri",
    "CALENDLY_AUTH_URL": "connectors.calendly.oauth.auth_url",
    "BREVO_API_KEY": "brevo.api_key",
    "BREVO_API_URL": "brevo.api_url",
    "BREVO_PLAN": "brevo.plan",
    "BREVO_DRY_RUN": "brevo.dry_run",
    "BREVO_BATCH_ENABLED": "brevo.batch.enabled",
    "DATABASE_URL": "storage.database_url",
    "REDIS_URL": "storage.redis_url",
    "CONNECTOR_DATA_DIR": "storage.data_dir",
    "HOST": "server.host",
    "PORT": "server.port",
    "ADMIN_PORT": "server.admin_port",
    "ADMIN_HOST": "server.admin_host",
    "PUBLIC_URL": "server.public_url",
    "WORKER_PROCESSES": "worker.processes",
    "WORKER_THREADS": "worker.threads",
    "METRICS_PORT": "worker.metrics_port",
    "CONNECTOR_ADMIN_TOKEN": "security.admin_token",
    "CONNECTOR_ENCRYPTION_KEY": "security.encryption_key",
    "LOG_LEVEL": "connectors.calendly.log_level",
}
