"""One exception hierarchy for calendly-brevo.

::

    ConnectorError
    ├── ConfigError                 bad or missing configuration; names the key path and the fix
    ├── SignatureError              a webhook request that must be refused with 401
    │   ├── MissingSignature
    │   ├── MalformedSignature
    │   ├── StaleSignature
    │   └── InvalidSignature
    ├── QueueUnavailable            the queue cannot take a message (receiver answers 503)
    ├── ServiceUnavailable          a store, queue or API a command needs is unreachable or not
    │                               created yet; the CLI prints it as one line with the fix
    ├── PermanentError              retrying cannot help: the event goes to the dead-letter table
    │   ├── UnmappableEvent         a payload that cannot be mapped (missing email, bad shape, ...)
    │   ├── BrevoPermanentError     4xx from Brevo that a retry will not fix (400, 401, 403, 404)
    │   ├── BrevoSetupError         attributes or lists the mapping needs do not exist in Brevo
    │   ├── EventInDoubt            a custom event may already be in Brevo and no lookup is left
    │   └── CalendlyPermanentError  4xx from Calendly that a retry will not fix
    │       ├── CalendlyAuthError       401: token expired, revoked or refresh token rejected
    │       ├── CalendlyForbidden       403: missing scope or plan
    │       ├── CalendlyNotFound        404
    │       └── CalendlyConflict        409: already exists (e.g. a webhook for that URL)
    └── TransientError              worth retrying later
        ├── BrevoTransientError     429, 425, 5xx, timeouts, connection errors
        ├── RateLimited             our own token bucket says wait; carries ``delay`` seconds
        └── CalendlyTransientError  429, 5xx, timeouts from Calendly

How the worker treats them (:mod:`worker.pipeline`, :mod:`worker.actors`): the pipeline catches
a ``PermanentError`` itself and writes the event to the ledger's dead letters with its ``code``
as the reason (:func:`worker.outcomes.dead_letter`), so the actor returns normally and Dramatiq
never sees it (no ``throws=``, no dead-letter middleware: the one place that dead-letters is the
pipeline). A ``TransientError`` reaches the actor, which raises ``dramatiq.Retry(delay=...)``
for it (a ``RateLimitWait`` when it is ``rate_limited``: a wait, not a failure); on the last
attempt the pipeline dead-letters it instead, as ``retries_exhausted`` (or ``expired``).
Anything else is a bug: the pipeline records it on the claim and re-raises, Dramatiq retries
it, and the attempt after ``worker.max_retries`` dead-letters it with reason ``error``; never
acked and dropped.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(ConnectorError):
    """Configuration that cannot work. ``path`` is the dotted key, ``allowed`` what would."""

    def __init__(self, path: str, problem: str, allowed: str | None = None) -> None:
        self.path = path
        self.problem = problem
        self.allowed = allowed
        message = f"config error at {path}: {problem}"
        if allowed:
            message += f" (allowed: {allowed})"
        super().__init__(message)


class SignatureError(ConnectorError):
    """A webhook that is not provably from Calendly. ``reason`` is a short metric label."""

    reason = "bad_signature"


class MissingSignature(SignatureError):
    reason = "unsigned"


class MalformedSignature(SignatureError):
    reason = "malformed_signature"


class StaleSignature(SignatureError):
    reason = "stale"


class InvalidSignature(SignatureError):
    reason = "bad_signature"


class QueueUnavailable(ConnectorError):
    """The queue (Redis or the embedded SQLite queue) could not durably take the event."""


class ServiceUnavailable(ConnectorError):
    """What a command needs cannot be reached (or, for a read-only command, does not exist yet).

    ``fix`` is one sentence the operator can act on."""

    def __init__(self, message: str, fix: str) -> None:
        self.fix = fix
        super().__init__(message)


class PermanentError(ConnectorError):
    """Retrying will not help. ``code`` is a short, low-cardinality label."""

    code = "permanent"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UnmappableEvent(PermanentError):
    code = "unmappable"


class BrevoPermanentError(PermanentError):
    code = "brevo_permanent"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        brevo_code: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.brevo_code = brevo_code


class BrevoSetupError(PermanentError):
    code = "brevo_setup"


class EventInDoubt(PermanentError):
    """An earlier attempt may have sent the custom event, the in-doubt lookup share
    (``brevo.lookup_share``) is spent, and the event is not one that may be sent twice
    (``brevo.resend_in_doubt_events``): an operator checks Brevo, then replays or purges it."""

    code = "in_doubt"


class CalendlyPermanentError(PermanentError):
    code = "calendly_permanent"


class CalendlyAuthError(CalendlyPermanentError):
    code = "calendly_unauthorized"


class CalendlyForbidden(CalendlyPermanentError):
    code = "calendly_forbidden"


class CalendlyNotFound(CalendlyPermanentError):
    code = "calendly_not_found"


class CalendlyConflict(CalendlyPermanentError):
    code = "calendly_conflict"


class TransientError(ConnectorError):
    """Worth retrying. ``delay`` (seconds) is a hint for the earliest useful retry.

    ``rate_limited``: a quota said "not now" (our token bucket, or a 429): nothing was tried, so
    the worker waits ``delay`` and does not count the attempt against ``worker.max_retries``."""

    def __init__(
        self, message: str, *, delay: float | None = None, rate_limited: bool = False
    ) -> None:
        super().__init__(message)
        self.delay = delay
        self.rate_limited = rate_limited


class BrevoTransientError(TransientError):
    """``maybe_applied``: the request may have reached Brevo and been applied (no answer after it
    was sent, or a gateway timeout); a non-idempotent call must not be repeated blindly."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        delay: float | None = None,
        maybe_applied: bool = False,
    ) -> None:
        super().__init__(message, delay=delay, rate_limited=status == 429)
        self.status = status
        self.maybe_applied = maybe_applied


class RateLimited(TransientError):
    """The shared token bucket has no token for ``family`` within the allowed wait."""

    def __init__(self, family: str, delay: float) -> None:
        message = f"rate limit for {family}: wait {delay:.2f}s"
        super().__init__(message, delay=delay, rate_limited=True)
        self.family = family


class CalendlyTransientError(TransientError):
    pass
