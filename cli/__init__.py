"""The calendly-brevo command line and the embedded single-process runner (`run`).

An entrypoint like receiver/ and worker/: it may import them and the core; the core imports
nothing from here (import-linter contracts in pyproject.toml)."""
