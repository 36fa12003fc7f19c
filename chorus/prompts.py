"""Texts that Chorus writes into a model's context and that other parts read back.

They are one layer below both their writers and their readers: the memory that recalls what a
user said writes :data:`MEMORY_HEADER`, and the offline model, which cannot understand prose,
finds the recalled memories by it.
"""

from __future__ import annotations

MEMORY_HEADER = "What you remember about this user (from earlier conversations):"
"""The first line of the system message that carries a user's recalled memories."""
