"""Structured logging: JSON lines in production, readable lines in a terminal.

Every record (ours through structlog, libraries' through the stdlib bridge) passes
:class:`Redactor`: configured secret values are replaced by ``[REDACTED]`` wherever they appear,
and email addresses are masked (``j***@example.com``) unless the seed's ``debug: true`` asks for
PII. Full webhook payloads are only logged with ``log_webhooks: true``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog
from pydantic import BaseModel, SecretStr

from calendly_brevo.config import Settings
from calendly_brevo.pii import mask_email, mask_name, mask_phone

#: Structured fields whose values are a person's name, phone number or answers.
PII_FIELDS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "full_name",
        "phone",
        "phone_number",
        "text_reminder_number",
        "sms",
        "answer",
        "answers",
        "questions_and_answers",
        "FIRSTNAME",
        "LASTNAME",
        "SMS",
    }
)
#: pydantic quotes the offending input in its messages: ``input_value='Jan Jansen'``.
INPUT_VALUE = re.compile(r"input_value=(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^,\]]*)")
LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "verbose": logging.DEBUG,
    "debug": logging.DEBUG,
}


def scrub_error(text: str) -> str:
    """An error text fit to store (dead letters): no quoted input values, emails or phones."""
    return mask_phone(mask_email(INPUT_VALUE.sub("input_value=[hidden]", text)))


def collect_secrets(settings: Settings) -> list[str]:
    """Every secret value in the settings (and the environment's usual suspects)."""
    found: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, SecretStr):
            value = obj.get_secret_value()
            # A list of keys ("new,old" encryption keys) is redacted whole and key by key.
            parts = {value, *(part.strip() for part in value.split(","))}
            found.extend(v for v in parts if len(v) >= 4)
        elif isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                walk(getattr(obj, name))
        elif isinstance(obj, dict):
            for value in obj.values():
                walk(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value)

    walk(settings)
    for var in ("DATABASE_URL", "REDIS_URL"):
        url = os.environ.get(var, "")
        m = re.search(r"://[^:/@]*:([^@]+)@", url)
        if m:
            found.append(m.group(1))
    return sorted(set(found), key=len, reverse=True)


class Redactor:
    """A structlog processor (and a plain function over strings)."""

    def __init__(self, secrets: Iterable[str] = (), *, mask_pii: bool = True) -> None:
        self.secrets = [s for s in secrets if s]
        self.mask_pii = mask_pii

    def add_secrets(self, *secrets: str) -> None:
        self.secrets = sorted({*self.secrets, *(s for s in secrets if s)}, key=len, reverse=True)

    def clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, "[REDACTED]")
            return mask_phone(mask_email(value)) if self.mask_pii else value
        if isinstance(value, dict):
            return {k: self._field(k, v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.clean(v) for v in value]
        if isinstance(value, BaseException):
            return self.clean(f"{type(value).__name__}: {value}")
        return value

    def _field(self, key: Any, value: Any) -> Any:
        """A named field: a name, phone or answer is masked whole outside debug."""
        if self.mask_pii and key in PII_FIELDS and value:
            if isinstance(value, str):
                return mask_name(value) if "name" in str(key).lower() else "[PII]"
            return "[PII]"
        return self.clean(value)

    def __call__(
        self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = self._field(key, value)
        return event_dict


REDACTOR = Redactor()


class MessageArgsFilter(logging.Filter):
    """Dramatiq logs a message as ``process_event('<raw webhook body>', …)``: names, answers and
    phone numbers at error level. Show it as ``process_event(message_id=…)`` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("dramatiq") and isinstance(record.args, tuple):
            record.args = tuple(_message_label(arg) for arg in record.args)
        return True


def _message_label(arg: Any) -> Any:
    actor = getattr(arg, "actor_name", None)
    message_id = getattr(arg, "message_id", None)
    if isinstance(actor, str) and isinstance(message_id, str) and hasattr(arg, "args"):
        return f"{actor}(message_id={message_id})"
    return arg


def configure_logging(settings: Settings, *, json_logs: bool | None = None) -> Redactor:
    """Configure structlog and the stdlib root logger once per process."""
    cal = settings.calendly
    level = logging.DEBUG if cal.debug else LEVELS[cal.log_level]
    REDACTOR.secrets = collect_secrets(settings)
    REDACTOR.mask_pii = not cal.debug
    if json_logs is None:
        fmt = os.environ.get("LOG_FORMAT", "").lower()
        json_logs = fmt == "json" or (fmt != "console" and not sys.stderr.isatty())

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        REDACTOR,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MessageArgsFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "httpx", "httpcore", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    logging.getLogger("dramatiq").setLevel(max(level, logging.INFO))
    return REDACTOR


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
