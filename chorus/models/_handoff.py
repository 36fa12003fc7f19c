"""The offline model as a member of a swarm: it hands the conversation over when another member
fits the user's message better (``transfer_to_<name>`` tools, see :mod:`chorus.teams.swarm`)."""

from __future__ import annotations

import re
from typing import Any

from chorus.models._fit import agent_score, lexicon_of, shared_words
from chorus.models._understand import read
from chorus.models.local import ModelRequest, ToolCall

HANDOFF_PREFIX = "transfer_to_"
"""How a handoff tool's name starts; the rest is the member it hands the conversation to."""


def handoff_call(user_text: str, request: ModelRequest) -> ToolCall | None:
    """A call to the handoff tool of the member that fits ``user_text`` clearly better than this
    one (a higher score, and a keyword or a tool of its own that matches), else None. A member never
    hands straight back to the one that just handed the conversation to it."""
    offered = {t["function"]["name"][len(HANDOFF_PREFIX):]: t["function"]["name"] for t in request.tools
               if t["function"]["name"].startswith(HANDOFF_PREFIX)}
    hints = request.hints
    if not offered or not user_text.strip():
        return None
    handed_by = _handed_by(request.messages, hints.agent)
    lexicon = lexicon_of(hints)
    reading = read(user_text, lexicon)
    shared = shared_words(hints.agents.values(), hints.tools)

    def score(name: str) -> int:
        spec = hints.agents.get(name)
        return agent_score(reading, spec, hints.tools, lexicon, shared=shared) if spec is not None else 0

    mine = score(hints.agent or "")
    ranked = sorted(((score(name), name) for name in offered
                     if name in hints.agents and name != handed_by), key=lambda pair: -pair[0])
    if not ranked or ranked[0][0] < max(mine + 1, 2):
        return None
    target = ranked[0][1]
    role = re.split(r"[:;(.]|, | - | — ", hints.agents[target].description, maxsplit=1)[0].strip()
    reason = f"{target} fits this better" + (f" ({role[:1].lower()}{role[1:]})" if role else "")
    return ToolCall(name=offered[target], arguments={"reason": reason})


def _handed_by(messages: list[dict[str, Any]], me: str | None) -> str | None:
    """The member that handed the conversation to ``me`` in this turn, if one did."""
    for message in reversed(messages):
        if message.get("role") == "user" and message.get("name", "user") == "user":
            return None
        if message.get("role") == "user" and message.get("name") not in (None, me):
            return str(message["name"])
    return None
