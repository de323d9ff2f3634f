"""The service's database: one SQLAlchemy engine per process (SQLite by default, PostgreSQL when configured)."""
