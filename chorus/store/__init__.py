"""Storage: the SQL schema (Alembic owns it), engines, accounts, checkpoints and Chainlit's data layer."""

from __future__ import annotations

from chorus.store.db import StoreError, database_url, make_engine, upgrade

__all__ = ["StoreError", "database_url", "make_engine", "upgrade"]
