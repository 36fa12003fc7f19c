"""Whose memory it is: the user ids that name nobody in particular get none."""

from __future__ import annotations

ANONYMOUS = frozenset({"", "anonymous"})
"""User ids that name nobody in particular (the page without logins): they get no memory."""
