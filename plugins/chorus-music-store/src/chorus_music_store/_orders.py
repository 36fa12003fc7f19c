"""The store's orders: tracks a verified customer buys in the chat, kept in this plugin's own SQLite
file in Chorus's data directory (the catalog and the invoices are read-only; an order is the one
thing this plugin writes). Placing an order is a tool that needs the customer's approval."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ORDERS_FILE = "music_store_orders.sqlite"


class Orders:
    """Orders in ``path`` (made on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INTEGER "
                     "NOT NULL, track_id INTEGER NOT NULL, track TEXT NOT NULL, artist TEXT, price TEXT NOT NULL, "
                     "placed_at TEXT NOT NULL)")
        return conn

    def place(self, customer_id: int, track: dict[str, Any]) -> int:
        """A new order of ``track`` (a row of :meth:`MusicStore.find_tracks`); its number."""
        with self._lock, contextlib.closing(self._connect()) as conn, conn:
            cursor = conn.execute(
                "INSERT INTO orders (customer_id, track_id, track, artist, price, placed_at) VALUES (?, ?, ?, ?, ?, ?)",
                (customer_id, track["id"], track["name"], track.get("artist"), str(track["price"]),
                 datetime.now(UTC).isoformat(timespec="seconds")))
            return int(cursor.lastrowid or 0)

    def of(self, customer_id: int) -> list[dict[str, Any]]:
        """The customer's orders, newest first."""
        with self._lock, contextlib.closing(self._connect()) as conn:
            rows = conn.execute("SELECT id, track, artist, price, placed_at FROM orders WHERE customer_id = ? "
                                "ORDER BY id DESC", (customer_id,)).fetchall()
        return [{"order": r[0], "track": r[1], "artist": r[2], "price": r[3], "placed_at": r[4]} for r in rows]
