"""Security tests reuse the Calendly fixtures: a running fake Calendly and an HTTP client."""

from tests.calendly.conftest import cal, http  # noqa: F401 - fixtures
