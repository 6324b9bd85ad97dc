"""Every store test runs on SQLite and on PostgreSQL: the `store` fixture lives in tests/conftest.py,
shared with the service, API and page tests."""
