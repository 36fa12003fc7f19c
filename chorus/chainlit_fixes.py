"""Fixes to Chainlit that the page needs under load, applied once by ``chorus.app``.

Chainlit's ``Step`` and ``Message`` constructors call ``time.sleep(0.001)``, so that steps created
one after another get different ``created_at`` timestamps. That call blocks the whole event loop:
every chat served by the process stops for a millisecond each time any chat creates a message
or a step. A turn creates several (the user's message, each reply, tool steps, the usage step),
which made it about half of a turn's cost with 200 chats streaming at once (Chainlit PR #1374
proposed the same fix upstream).

:func:`apply` keeps the guarantee the sleep gave, without sleeping: in those two modules,
``utc_now`` returns a timestamp that is strictly later than the previous one, and ``time.sleep``
no longer waits for intervals of a millisecond or less. Chainlit is otherwise untouched.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

_last: datetime | None = None


def utc_now() -> str:
    """Chainlit's ``utc_now``, strictly increasing within this process (ISO 8601, microseconds, Z)."""
    global _last
    now = datetime.now(UTC).replace(tzinfo=None)
    if _last is not None and now <= _last:
        now = _last + timedelta(microseconds=1)
    _last = now
    return now.isoformat(timespec="microseconds") + "Z"


class _TimeWithoutShortSleeps(ModuleType):
    """The ``time`` module as chainlit.step and chainlit.message see it."""

    def __init__(self) -> None:
        super().__init__("time")

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds > 0.001:
            time.sleep(seconds)


def apply() -> None:
    """Patch chainlit.step and chainlit.message (idempotent)."""
    import importlib

    # By name: ``chainlit.step`` the attribute is the decorator, not the module.
    for module in (importlib.import_module("chainlit.step"), importlib.import_module("chainlit.message")):
        if getattr(module, "time", None) is time:
            module.time = _TimeWithoutShortSleeps()  # type: ignore[attr-defined]
        if hasattr(module, "utc_now"):
            module.utc_now = utc_now  # type: ignore[attr-defined]
