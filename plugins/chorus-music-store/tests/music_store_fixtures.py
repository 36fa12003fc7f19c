"""Shared by this plugin's tests: where the real Chinook is, and a Chorus that runs whole turns."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from chorus.events import MessageEvent, ToolCallEvent, ToolResultEvent, TurnEvent
from chorus.settings import Settings

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


def settings_for(home: Path, **overrides: object) -> Settings:
    """Settings for a throwaway Chorus: offline model, no tracing, no team files but the plugin's."""
    (home / "agents").mkdir(parents=True, exist_ok=True)
    values: dict[str, object] = {
        "home": home, "agents_dir": home / "agents", "tracing": False, "memory": False,
        "forbid_real_models": True, "offline_token_delay": 0.0, "knowledge_dir": home / "no-knowledge",
        "plugins": "assistant,guide,music_store",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def replies(events: Iterable[TurnEvent]) -> list[MessageEvent]:
    return [e for e in events if isinstance(e, MessageEvent)]


def visible_text(events: Iterable[TurnEvent]) -> str:
    """Everything the user could read of a turn: replies, tool arguments and tool results."""
    parts: list[str] = []
    for e in events:
        if isinstance(e, MessageEvent):
            parts.append(e.content)
        elif isinstance(e, ToolCallEvent):
            parts.append(e.arguments)
        elif isinstance(e, ToolResultEvent):
            parts.append(e.result)
    return "\n".join(parts)
