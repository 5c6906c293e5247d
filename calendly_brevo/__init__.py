"""calendly-brevo: keep Brevo in step with Calendly."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("calendly-brevo")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
