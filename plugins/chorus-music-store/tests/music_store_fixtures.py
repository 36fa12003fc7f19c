"""Shared by this plugin's tests: where the real Chinook is, and which plugins a test's Chorus loads
(``make_chorus``, ``run`` and the event helpers come from ``chorus.testing``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_REPO = Path(__file__).resolve().parents[3]
CANDIDATES = [Path(p) for p in filter(None, [os.environ.get("CHINOOK_PATH")])] + [
    _REPO.parent / "shared" / "data" / "chinook.sqlite",
    Path("/work/shared/data/chinook.sqlite"),
]


def chinook_path() -> Path:
    """The real Chinook database (``../shared/data/chinook.sqlite`` or ``CHINOOK_PATH``).

    Skips when it is absent; under CI=true that is a failure.
    """
    for path in CANDIDATES:
        if path.is_file():
            return path
    message = f"the Chinook database is not at any of {[str(p) for p in CANDIDATES]}; set CHINOOK_PATH"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


STORE_PLUGINS = ("assistant", "guide", "music_store")
"""The installed plugins a Music store test loads (``make_chorus(installed=STORE_PLUGINS)``): the
store and the built-in agents its team and the default team name."""
