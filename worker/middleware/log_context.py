"""Bind the message id to every log line of one message; clear it afterwards."""

from __future__ import annotations

from typing import Any

import structlog
from dramatiq.middleware import Middleware


class LogContext(Middleware):
    def before_process_message(self, broker: Any, message: Any) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(message_id=message.message_id)

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message
