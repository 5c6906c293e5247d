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

One module per concern; every public name is importable from ``calendly_brevo.config``:

- :mod:`~calendly_brevo.config.calendly`: the seed's blocks (``connectors.calendly``,
  ``field_mapping``);
- :mod:`~calendly_brevo.config.brevo`: the ``brevo`` section;
- :mod:`~calendly_brevo.config.settings`: ``server``, ``worker``, ``storage``, ``security`` and
  :class:`Settings` itself, with :data:`ENV_OVERRIDES`;
- :mod:`~calendly_brevo.config.rules`: :class:`Rules`, the part the business rules read;
- :mod:`~calendly_brevo.config.loading`: :func:`load_settings` (file, interpolation, overrides).
"""

from calendly_brevo.config.base import (
    DEFAULT_BREVO_API_URL,
    DEFAULT_CALENDLY_API_URL,
    PLACEHOLDERS,
    Strict,
)
from calendly_brevo.config.brevo import (
    PLAN_PRESETS,
    BrevoEventNames,
    BrevoSettings,
    Bucket,
    ListMove,
    ListMoves,
)
from calendly_brevo.config.calendly import (
    CalendlySettings,
    Connectors,
    EventMappingEntry,
    EventTypeFilter,
    FieldMapping,
    OAuthSettings,
    SyncSwitches,
    WebhookSettings,
)
from calendly_brevo.config.loading import interpolate, load_settings
from calendly_brevo.config.rules import Rules
from calendly_brevo.config.settings import (
    ENV_OVERRIDES,
    SecuritySettings,
    ServerSettings,
    Settings,
    StorageSettings,
    WorkerSettings,
)

__all__ = [
    "DEFAULT_BREVO_API_URL",
    "DEFAULT_CALENDLY_API_URL",
    "ENV_OVERRIDES",
    "PLACEHOLDERS",
    "PLAN_PRESETS",
    "BrevoEventNames",
    "BrevoSettings",
    "Bucket",
    "CalendlySettings",
    "Connectors",
    "EventMappingEntry",
    "EventTypeFilter",
    "FieldMapping",
    "ListMove",
    "ListMoves",
    "OAuthSettings",
    "Rules",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "Strict",
    "SyncSwitches",
    "WebhookSettings",
    "WorkerSettings",
    "interpolate",
    "load_settings",
]
