"""Settings: one typed object built once at the edge and passed down.

Sources, later wins:

1. the YAML file named by ``CONNECTOR_CONFIG`` (or ``--config``), with ``${VAR}`` and
   ``${VAR:-default}`` replaced from the environment after parsing, in string values only (so a
   secret holding ``"``, ``\\`` or ``: `` cannot break the YAML, and a YAML error never quotes it);
2. the 12-factor environment variables in :data:`ENV_OVERRIDES`.

The seed's blocks load verbatim (``connectors.calendly.*``, ``field_mapping``, the debug keys);
the connector's own sections (``brevo``, ``server``, ``worker``, ``storage``, ``security``) sit
beside them. Unknown keys are errors, so a typo fails at start with its dotted path instead of
being silently ignored. Secrets are ``SecretStr``: their repr is ``'**********'``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from calendly_brevo.batch_config import BatchSettings
from calendly_brevo.errors import ConfigError

DEFAULT_CALENDLY_API_URL = "https://api.calendly.com"
DEFAULT_BREVO_API_URL = "https://api.brevo.com/v3"

PLACEHOLDERS = re.compile(
    r"^(your[_-].*|changeme|change[_-]me|xxx+|todo|placeholder|<.*>|\$\{.*\})$", re.IGNORECASE
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- the seed's blocks --------------------------------------------------------------------------
class EventTypeFilter(Strict):
    """Which event types are pushed to Brevo (events of others are stored, not pushed). Each
    entry is an event type URI, slug or name, matched as ``event_mapping`` matches. Empty
    ``include``: every type; ``exclude`` wins over ``include``."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @field_validator("include", "exclude")
    @classmethod
    def _not_blank(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not item.strip() for item in v):
            raise ValueError("entries are event type URIs, slugs or names, not blank")
        return tuple(item.strip() for item in v)


class SyncSwitches(Strict):
    contacts: bool = True
    events: bool = True
    cancellations: bool = True
    event_types: EventTypeFilter = EventTypeFilter()


class EventMappingEntry(Strict):
    """One Calendly event type → Brevo list(s). Matched by URI, else slug, else name."""

    list_id: int | None = Field(default=None, gt=0)
    list_ids: tuple[int, ...] = ()
    event_type_uri: str | None = None
    slug: str | None = None
    name: str | None = None

    @field_validator("list_ids")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(i <= 0 for i in v):
            raise ValueError("list ids are positive integers")
        return v

    @property
    def lists(self) -> tuple[int, ...]:
        ids = ((self.list_id,) if self.list_id else ()) + self.list_ids
        return tuple(dict.fromkeys(ids))


class WebhookSettings(Strict):
    signing_key: SecretStr | None = None
    #: Older keys still accepted while a rotation is in progress.
    previous_signing_keys: tuple[SecretStr, ...] = ()
    tolerance_seconds: int = Field(default=180, ge=1, le=3600)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    #: A client that has not sent its whole body within this many seconds gets 408.
    read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @property
    def keys(self) -> tuple[str, ...]:
        keys = [self.signing_key] if self.signing_key else []
        keys += list(self.previous_signing_keys)
        return tuple(k.get_secret_value() for k in keys if k.get_secret_value())


class OAuthSettings(Strict):
    client_id: str | None = None
    client_secret: SecretStr | None = None
    redirect_uri: str | None = None
    auth_url: str = "https://auth.calendly.com"
    scopes: tuple[str, ...] = ()


class CalendlySettings(Strict):
    enabled: bool = True
    access_token: SecretStr | None = None
    api_url: str = DEFAULT_CALENDLY_API_URL
    organization_uri: str | None = None
    sync: SyncSwitches = SyncSwitches()
    event_mapping: dict[str, EventMappingEntry] = {}
    webhook: WebhookSettings = WebhookSettings()
    oauth: OAuthSettings = OAuthSettings()
    #: Seed debug block: ``debug: true`` logs PII; ``log_webhooks`` logs full payloads.
    debug: bool = False
    log_level: Literal["error", "warning", "info", "verbose", "debug"] = "info"
    log_webhooks: bool = False
    #: Also accept the field mapping nested here (the seed's indentation is ambiguous).
    field_mapping: FieldMapping | None = None


class FieldMapping(Strict):
    """Calendly invitee fields → Brevo attribute names (upper case)."""

    email: str = "email"
    name: str | None = "FIRSTNAME"
    first_name: str | None = None
    last_name: str | None = "LASTNAME"
    questions_and_answers: dict[str, str] = {}
    event_type_name: str | None = "CALENDLY_EVENT_TYPE"
    scheduled_at: str | None = "MEETING_DATE"
    status: str | None = "BOOKING_STATUS"
    timezone: str | None = None
    cancel_url: str | None = None
    reschedule_url: str | None = None
    #: UTM tracking: ``utm_source: UTM_SOURCE`` etc.
    tracking: dict[str, str] = {}
    #: Region for phone numbers given without a country code (ISO 3166 alpha-2, e.g. "NL").
    phone_default_region: str | None = None
    #: The number the invitee gave for SMS reminders (Calendly's ``text_reminder_number``), in
    #: E.164; a phone answer mapped to the same attribute wins. ``null`` to leave it out.
    text_reminder_number: str | None = "SMS"

    @field_validator("email")
    @classmethod
    def _email_is_the_identifier(cls, value: str) -> str:
        # The seed's `email: email`: Brevo identifies the contact by the invitee's email, the
        # one thing that is not remappable. Anything else would be accepted and ignored.
        if value.strip().lower() != "email":
            raise ValueError(
                f"{value!r} is not supported: the contact is always identified by the invitee's "
                "email (write `email: email` or remove the key)"
            )
        return "email"

    @model_validator(mode="after")
    def _attribute_names(self) -> FieldMapping:
        names: dict[str, str | None] = {
            k: getattr(self, k)
            for k in (
                "name",
                "first_name",
                "last_name",
                "event_type_name",
                "scheduled_at",
                "status",
                "timezone",
                "cancel_url",
                "reschedule_url",
                "text_reminder_number",
            )
        }
        names |= {f"questions_and_answers.{k}": v for k, v in self.questions_and_answers.items()}
        names |= {f"tracking.{k}": v for k, v in self.tracking.items()}
        for key, value in names.items():
            if value is not None and not re.fullmatch(r"[A-Z][A-Z0-9_]*", value):
                raise ValueError(
                    f"{key}: Brevo attribute names are upper case letters, digits and _ "
                    f"(got {value!r}, try {re.sub(r'[^A-Z0-9_]', '_', value.upper())!r})"
                )
        return self


CalendlySettings.model_rebuild()


class Connectors(Strict):
    calendly: CalendlySettings = CalendlySettings()


# --- the connector's own sections ---------------------------------------------------------------
class Bucket(Strict):
    rate: float = Field(gt=0, description="tokens per second")
    burst: int = Field(ge=1, description="bucket capacity")


PLAN_PRESETS: dict[str, dict[str, Bucket]] = {
    # Brevo: 10 rps on /contacts and POST /events, 100/hour on everything else.
    "general": {
        "contacts": Bucket(rate=10, burst=10),
        "events": Bucket(rate=10, burst=10),
        "other": Bucket(rate=100 / 3600, burst=5),
    },
    # Professional and Enterprise: 20 rps.
    "advanced": {
        "contacts": Bucket(rate=20, burst=20),
        "events": Bucket(rate=20, burst=20),
        "other": Bucket(rate=100 / 3600, burst=5),
    },
}


class BrevoEventNames(Strict):
    created: str = "calendly_invitee_created"
    rescheduled: str = "calendly_invitee_rescheduled"
    canceled: str = "calendly_invitee_canceled"
    no_show: str = "calendly_invitee_no_show"
    no_show_deleted: str | None = None
    routing_form_submitted: str | None = None


class ListMove(Strict):
    add: tuple[int, ...] = ()
    remove: tuple[int, ...] = ()


class ListMoves(Strict):
    on_cancel: ListMove = ListMove()
    on_no_show: ListMove = ListMove()


class BrevoSettings(Strict):
    api_key: SecretStr | None = None
    #: ``true``: log the Brevo calls instead of sending them, even with a key. Unset: dry only
    #: when there is no key, which outside embedded mode is refused (``Settings.require_brevo``).
    dry_run: bool | None = None
    api_url: str = DEFAULT_BREVO_API_URL
    plan: Literal["general", "advanced"] = "general"
    rate_limits: dict[Literal["contacts", "events", "other"], Bucket] = {}
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    events: BrevoEventNames = BrevoEventNames()
    list_moves: ListMoves = ListMoves()
    #: Where a phone number goes when the SMS identifier conflicts with another contact.
    sms_fallback_attribute: str = "PHONE_TEXT"
    #: Upsert the submitter of a routing form (``routing_form_submission.created``).
    upsert_routing_form_submitters: bool = False
    #: Before sending a custom event again after an attempt with an unknown outcome (no answer
    #: after the request was sent, a 504, a worker that died mid-event), look it up with
    #: ``GET /events``; found means it is not sent twice. Off: such an event may fire twice.
    check_before_resend: bool = True
    #: ``brevo setup``, ``doctor`` and the worker's set-up check at start retry transient
    #: answers (5xx, 429, timeouts) with backoff for this long before giving up. Keep it
    #: under the worker pod's startupProbe budget (60 s in deploy/k8s).
    startup_wait_seconds: float = Field(default=30.0, ge=0, le=3600)
    #: Share of the "other" family (100 requests/hour) the in-doubt lookups (``GET /events``)
    #: may use; the rest stays free for set-up, doctor and list calls.
    lookup_share: float = Field(default=0.5, gt=0, le=1)
    #: When the lookup share is spent, custom events (Brevo names) that are sent again without
    #: a lookup because their automations tolerate a duplicate; any other in-doubt event is
    #: dead-lettered with reason ``in_doubt`` for an operator to check and replay.
    resend_in_doubt_events: list[str] = []
    #: Coalescing into Brevo's bulk endpoints (:mod:`calendly_brevo.batch_config`).
    batch: BatchSettings = BatchSettings()

    @model_validator(mode="after")
    def _resend_names_are_events(self) -> BrevoSettings:
        known = {v for v in self.events.model_dump().values() if v}
        unknown = sorted(set(self.resend_in_doubt_events) - known)
        if unknown:
            raise ValueError(
                f"resend_in_doubt_events: {', '.join(unknown)} is not one of the custom events "
                f"this connector sends ({', '.join(sorted(known))})"
            )
        return self

    def lookup_bucket(self) -> Bucket:
        """The in-doubt lookups' share of the "other" family's bucket."""
        other = self.bucket("other")
        return Bucket(
            rate=other.rate * self.lookup_share,
            burst=max(1, int(other.burst * self.lookup_share)),
        )

    @property
    def runs_dry(self) -> bool:
        if self.dry_run is not None:
            return self.dry_run
        return self.api_key is None or not self.api_key.get_secret_value()

    def bucket(self, family: str) -> Bucket:
        return self.rate_limits.get(family) or PLAN_PRESETS[self.plan][family]  # type: ignore[call-overload]


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

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; an unset ``${VAR}`` becomes empty."""

    def sub(m: re.Match[str]) -> str:
        value = env.get(m.group(1))
        if value is None or (value == "" and m.group(2) is not None):
            return m.group(2) or ""
        return value

    return _VAR.sub(sub, text)


def _expand(data: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value of a parsed document (keys are left alone)."""
    if isinstance(data, dict):
        return {k: _expand(v, env) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand(v, env) for v in data]
    if isinstance(data, str):
        return interpolate(data, env)
    return data


def _yaml_error(path: str, exc: yaml.YAMLError) -> ConfigError:
    """Where and what, without PyYAML's snippet of the offending line (it may hold a secret)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or "cannot be parsed"
    return ConfigError(path, f"not valid YAML{where}: {problem}", "check the quoting on that line")


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _blank_to_none(data: Any) -> Any:
    """An interpolated-but-empty scalar (``"${UNSET}"`` → ``""``) means "not set"."""
    if isinstance(data, dict):
        return {k: _blank_to_none(v) for k, v in data.items() if v != ""}
    if isinstance(data, list):
        return [_blank_to_none(v) for v in data]
    return data


def _format_errors(err: ValidationError, source: str) -> ConfigError:
    lines = []
    first_path = "config"
    for i, e in enumerate(err.errors()):
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if i == 0:
            first_path = path
        if e["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key (check the spelling; see config.example.yaml)")
        else:
            lines.append(f"  {path}: {e['msg']}")
    return ConfigError(first_path, f"{source} is invalid:\n" + "\n".join(lines))


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` from a YAML file (optional) and the environment."""
    env = os.environ if env is None else env
    path = path or env.get("CONNECTOR_CONFIG") or None
    data: dict[str, Any] = {}
    source = "environment"
    if path:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                "CONNECTOR_CONFIG", f"cannot read {path}: {exc.strerror}", "a readable YAML file"
            ) from exc
        try:
            loaded = _expand(yaml.safe_load(text), env)
        except yaml.YAMLError as exc:
            raise _yaml_error(str(path), exc) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                str(path), "the top level must be a mapping", "keys such as connectors:"
            )
        data = _blank_to_none(loaded)
    for var, dotted in ENV_OVERRIDES.items():
        value = env.get(var)
        if value:
            _set_path(data, dotted, value)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _format_errors(exc, source) from None
    from calendly_brevo.secret_rules import check_secrets

    check_secrets(settings)
    return settings
