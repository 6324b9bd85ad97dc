"""The store: SQLAlchemy tables, Alembic migrations, and the cache/fix repository.

SQLite is the embedded default, PostgreSQL (`postgresql+psycopg://`) the production store.
"""

from lotlens.store.repository import Answer, FixRecord, Store, make_engine, upgrade

__all__ = ["Answer", "FixRecord", "Store", "make_engine", "upgrade"]
