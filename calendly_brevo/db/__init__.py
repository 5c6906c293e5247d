"""Storage: SQLAlchemy 2 models and engine set-up (Postgres in production, SQLite embedded)."""
