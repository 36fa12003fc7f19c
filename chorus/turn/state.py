"""What one turn carries while it runs (:class:`Turn`): its budget, its model calls and their
totals, the notices the model clients raised, its cancellation and whether the user stopped it.

A session holds the running turn (``ChatSession.turn``) only so that the model clients' callbacks
and the stop button reach it; everything about the turn lives here, and is gone with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autogen_core import CancellationToken

from chorus.events import NoticeEvent, UsageEvent
from chorus.models import CallRecord

if TYPE_CHECKING:
    from chorus.turn.session import ChatSession


@dataclass
class TurnBudget:
    """The caps one turn runs under; ``add`` says when a call crossed one."""

    max_tokens: int | None
    max_cost: float | None  # what is left of the user's daily budget
    daily_cap: float | None = None
    tokens: int = 0
    cost: float = 0.0
    reason: str = ""

    def add(self, record: CallRecord) -> bool:
        self.tokens += record.prompt_tokens + record.completion_tokens
        self.cost += record.cost or 0.0
        if self.reason:
            return False
        if self.max_tokens is not None and self.tokens > self.max_tokens:
            self.reason = (f"This answer was stopped: it used {self.tokens:,} tokens, over the per-turn budget of "
                           f"{self.max_tokens:,}. What was said so far is kept; ask a narrower question, or "
                           "the operator can raise CHORUS_TURN_TOKEN_BUDGET.")
        elif self.max_cost is not None and self.cost > self.max_cost:
            self.reason = (f"This answer was stopped: it reached your daily budget of ${self.daily_cap:,.2f} for "
                           "model calls. What was said so far is kept; the budget renews at midnight UTC.")
        return bool(self.reason)


@dataclass
class Turn:
    """One turn of one session, from the user's message to its ``done`` event."""

    id: str
    session: ChatSession
    text: str
    """The team's task: the user's words with any attached files."""
    typed: str
    """What the user typed (attachments left out)."""
    message_id: str | None
    budget: TurnBudget
    started: float = field(default_factory=time.perf_counter)
    cancel: CancellationToken = field(default_factory=CancellationToken)
    stopped: bool = False
    """The user pressed stop (or the server is stopping)."""
    keep_progress: bool = False
    """Stopped by the server (shutting down), not the user: a pipeline's finished steps are kept,
    so that the conversation goes on from the next step after the restart."""
    calls: list[CallRecord] = field(default_factory=list)
    """The model calls reported so far (:meth:`drain` moves new ones here)."""
    messages: int = 0
    agents: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0
    _pending: list[CallRecord] = field(default_factory=list)
    _notices: list[str] = field(default_factory=list)
    failure: tuple[str, BaseException] | None = None
    """The first model call of the turn that failed: (agent, exception)."""
    rewrites: dict[str, str] = field(default_factory=dict)
    """Replies the output guards changed, as the model wrote them → as shown (a blocked one → its
    note): the team's memory takes the shown text before it is saved (:mod:`chorus.turn.guarding`)."""
    _notices_seen: set[str] = field(default_factory=set)

    # -- what the model clients report while the team runs -----------------------------------

    def on_call(self, record: CallRecord) -> bool:
        """A model call finished; True when it crossed a budget (the team should stop)."""
        self._pending.append(record)
        return self.budget.add(record)

    def on_notice(self, text: str) -> None:
        self._notices.append(text)

    # -- what the turn tells the user -------------------------------------------------------

    def drain(self) -> list[UsageEvent]:
        """The calls reported since the last drain, as events, added to the totals."""
        events = []
        while self._pending:
            r = self._pending.pop(0)
            self.calls.append(r)
            self.prompt_tokens += r.prompt_tokens
            self.completion_tokens += r.completion_tokens
            self.cost = None if self.cost is None or r.cost is None else self.cost + r.cost
            events.append(UsageEvent.of(r))
        return events

    def notices(self) -> list[NoticeEvent]:
        """What the model clients reported since the last call (each text once per turn)."""
        out: list[NoticeEvent] = []
        while self._notices:
            text = self._notices.pop(0)
            if text not in self._notices_seen:
                self._notices_seen.add(text)
                out.append(NoticeEvent(text=text, level="warning", code="degraded"))
        return out

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)
