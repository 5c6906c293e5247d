"""Fake HTTP servers (Brevo, ...) for tests and the demo."""
