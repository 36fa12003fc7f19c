"""A pipeline (``type: sequential``) interrupted mid-way goes on from its next step.

While a pipeline runs, each finished step is checkpointed: the saved state is the team's state
before the turn, plus :data:`KEY` with the user's request and every finished step's message. A
turn that ends normally saves the team's state without it. So when the server restarts (or is
killed) in the middle, the conversation resumes with the finished steps kept; the page says where
it stopped, and a message such as "continue" runs the members after the last finished step, with
the request and the finished steps' messages as their input. Any other message starts afresh.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KEY = "chorus_pipeline"
"""The key of an interrupted pipeline's steps in a saved state (next to the team's)."""

_CONTINUE = re.compile(r"^\s*(please\s+)?(continue|go on|carry on|resume|keep going|proceed)\b", re.I)


@dataclass
class Interrupted:
    """A pipeline's turn that did not finish: the request, and the steps that did."""

    request: str
    total: int
    done: list[tuple[str, str]] = field(default_factory=list)
    """(member, message) of each finished step, in order."""

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request, "total": self.total, "done": [list(step) for step in self.done]}

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> Interrupted | None:
        data = state.get(KEY)
        if not isinstance(data, Mapping) or not isinstance(data.get("request"), str):
            return None
        done = [(str(a), str(c)) for a, c in data.get("done", []) if isinstance(a, str)]
        return cls(request=data["request"], total=int(data.get("total", len(done) + 1)), done=done)

    def next_member(self, members: Sequence[str]) -> str | None:
        """Who speaks next: the member after the last finished step (None when none is left)."""
        if not self.done:
            return members[0] if members else None
        last = self.done[-1][0]
        if last not in members or members.index(last) + 1 >= len(members):
            return None
        return members[members.index(last) + 1]

    def notice(self, members: Sequence[str]) -> str:
        after = self.done[-1][0] if self.done else None
        upcoming = self.next_member(members)
        where = f"after step {len(self.done)} of {self.total} ({after})" if after else "before its first step"
        return (f"The pipeline for “{_short(self.request)}” was interrupted {where}; the finished steps are kept. "
                f"Send **continue** to go on from {upcoming}, or send a new request to start over.")


def wants_to_continue(text: str) -> bool:
    return bool(_CONTINUE.match(text)) and len(text.split()) <= 6


def split(state: Mapping[str, Any]) -> tuple[dict[str, Any], Interrupted | None]:
    """A saved state as (the state without the pipeline's steps, the interrupted pipeline if any)."""
    return {k: v for k, v in state.items() if k != KEY}, Interrupted.of(state)


def with_steps(state: Mapping[str, Any], interrupted: Interrupted) -> dict[str, Any]:
    return {**{k: v for k, v in state.items() if k != KEY}, KEY: interrupted.to_dict()}


def _short(text: str, most: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= most else flat[: most - 1] + "…"
