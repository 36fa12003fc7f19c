"""The tools' per-conversation state (``ToolContext.state``) kept with the team's state.

A plugin's tools keep what a conversation has established in ``ToolContext.state`` (the music
store's verified customer, say). That is part of the conversation as much as the agents' memory
of it: it is saved in the same checkpoint, restored on resume (on any worker, after a restart),
and rewound with the team when the user edits an earlier message or stops a turn. So a saved
state is the team's AutoGen state with one more key, :data:`KEY`, holding a JSON copy of the
tools' state at that moment.

Only JSON values are kept (strings, numbers, booleans, None, lists and dicts with string keys):
a value of another type lives for the session only, and the log says so once per key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

KEY = "chorus_tool_state"
"""The key of the tools' state in a saved team state (AutoGen's own keys never clash with it)."""

_warned: set[str] = set()


def snapshot(state: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON copy of the tools' ``state``: what a checkpoint keeps (non-JSON values left out)."""
    kept: dict[str, Any] = {}
    for key, value in state.items():
        try:
            kept[str(key)] = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as exc:
            if key not in _warned:
                _warned.add(key)
                log.warning("ToolContext.state[%r] is not JSON (%s): it is not saved with the conversation, "
                            "so a resume, a restart or an edit forgets it", key, exc)
    return kept


def join(team_state: Mapping[str, Any], tools: Mapping[str, Any]) -> dict[str, Any]:
    """One saved state: the team's, plus the tools' (a shallow copy: the team's parts are shared)."""
    return {**team_state, KEY: snapshot(tools)}


def split(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A saved state as (the team's AutoGen state, the tools' state); states saved before the tools'
    state was kept have none."""
    team = {key: value for key, value in state.items() if key != KEY}
    tools = state.get(KEY)
    return team, json.loads(json.dumps(tools)) if isinstance(tools, Mapping) else {}


def restore(into: dict[str, Any], saved: Mapping[str, Any]) -> None:
    """Make the live tools' state ``into`` what ``saved`` holds, in place (tools hold that dict)."""
    into.clear()
    into.update(saved)
