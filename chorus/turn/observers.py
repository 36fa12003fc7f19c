"""Who watches a turn: the tracer, the cost ledger, and whatever comes later (metrics, guardrails,
the HTTP APIs) through one small interface, :class:`TurnObserver`.

:func:`chorus.turn.run_turn` calls, for each observer of ``Chorus.turn_observers()``:

- :meth:`~TurnObserver.begin` once the turn has the session (it was not refused);
- :meth:`~TurnObserver.event` with every event it yields, in order, ``done`` included;
- :meth:`~TurnObserver.end` once, when the turn is over and before its ``done`` is handed to the
  reader; a turn cut off (the reader went away, the page's stop cancelled its task) ends with a
  ``done`` of ``stop_reason="stopped"`` that no reader sees;
- :meth:`~TurnObserver.closed` once, after the reader has had ``done`` and the turn's run is wound
  down: work that must not compete with the turn itself, such as starting the trace's export
  (which, started before ``done``, made the ledger's write and the reader wait on the GIL).

An observer that raises is logged and skipped: it never breaks the turn or the other observers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from chorus.events import DoneEvent, MessageEvent, TokenEvent, TurnEvent
from chorus.store.usage import UsageRow
from chorus.tracing import Tracer, TurnRecord

if TYPE_CHECKING:
    from chorus.turn.state import Turn

log = logging.getLogger(__name__)


class TurnObserver:
    """Override what you need; every method does nothing by default."""

    def begin(self, turn: Turn) -> None:
        """The turn starts (``turn.session``, ``turn.text``, ``turn.id`` are set)."""

    def event(self, turn: Turn, event: TurnEvent) -> None:
        """The turn yields ``event`` (called before the reader gets it)."""

    async def end(self, turn: Turn, done: DoneEvent) -> None:
        """The turn is over: ``turn.calls`` holds every model call it made."""

    def closed(self, turn: Turn) -> None:
        """The reader has had ``done`` and the turn is wound down (after :meth:`end`; not awaited)."""


class TracingObserver(TurnObserver):
    """One MLflow trace per turn (:mod:`chorus.tracing`), written in the background."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self._records: dict[str, TurnRecord] = {}

    def begin(self, turn: Turn) -> None:
        session = turn.session
        self._records[turn.id] = self.tracer.begin(turn_id=turn.id, user=session.user_id, thread=session.thread_id,
                                                   team=session.spec.name, text=turn.text)

    def event(self, turn: Turn, event: TurnEvent) -> None:
        record = self._records.get(turn.id)
        if record is not None:
            record.note(event)

    async def end(self, turn: Turn, done: DoneEvent) -> None:
        record = self._records.get(turn.id)
        if record is not None:
            record.finish(done, turn.calls)

    def closed(self, turn: Turn) -> None:
        record = self._records.pop(turn.id, None)
        if record is not None and record.done is not None:
            self.tracer.submit(record)  # exported in the background, after the turn's own work


class LedgerObserver(TurnObserver):
    """Every model call of the turn into the session's cost ledger (when it has one)."""

    async def end(self, turn: Turn, done: DoneEvent) -> None:
        session = turn.session
        if session.ledger is None or not turn.calls:
            return
        source = "user" if session.personal is not None else "operator"
        rows = [UsageRow.of(call, user=session.user_id, thread_id=session.thread_id, turn_id=turn.id,
                            team=session.spec.name, key_source=source) for call in turn.calls]
        try:
            await session.ledger.record(rows)
        except Exception as exc:  # a failure is logged, never the user's problem
            log.error("could not record the usage of turn %s (thread %s): %s", turn.id, session.thread_id, exc)


class MetricsObserver(TurnObserver):
    """Prometheus metrics (:mod:`chorus.metrics`): each turn's outcome and times, each call's tokens
    and cost."""

    def __init__(self) -> None:
        self._first: dict[str, float] = {}

    def event(self, turn: Turn, event: TurnEvent) -> None:
        if turn.id not in self._first and isinstance(event, (TokenEvent, MessageEvent)):
            self._first[turn.id] = time.perf_counter() - turn.started

    async def end(self, turn: Turn, done: DoneEvent) -> None:
        from chorus import metrics

        team = turn.session.spec.name
        metrics.TURNS.labels(team, done.stop_reason).inc()
        metrics.TURN_SECONDS.labels(team).observe(time.perf_counter() - turn.started)
        first = self._first.pop(turn.id, None)
        if first is not None:
            metrics.FIRST_TOKEN_SECONDS.labels(team).observe(first)
        for call in turn.calls:
            metrics.MODEL_CALLS.labels(team, call.label, call.model).inc()
            metrics.TOKENS.labels(team, call.label, call.model, "prompt").inc(call.prompt_tokens)
            metrics.TOKENS.labels(team, call.label, call.model, "completion").inc(call.completion_tokens)
            if call.cost:
                metrics.COST.labels(team, call.label, call.model).inc(call.cost)

    def closed(self, turn: Turn) -> None:
        self._first.pop(turn.id, None)


class Observers:
    """The observers of one turn, each one's failure contained."""

    def __init__(self, observers: list[TurnObserver]) -> None:
        self.observers = observers
        self.ended = False

    def _each(self, turn: Turn, when: str, call: Callable[[TurnObserver], None]) -> None:
        for observer in self.observers:
            try:
                call(observer)
            except Exception:
                log.exception("turn observer %r failed %s turn %s", observer, when, turn.id)

    def begin(self, turn: Turn) -> None:
        self._each(turn, "at the start of", lambda observer: observer.begin(turn))

    def event(self, turn: Turn, event: TurnEvent) -> None:
        self._each(turn, f"on a {event.type} event of", lambda observer: observer.event(turn, event))

    async def end(self, turn: Turn, done: DoneEvent) -> None:
        if self.ended:
            return
        self.ended = True
        for observer in self.observers:
            try:
                await observer.end(turn, done)
            except Exception:
                log.exception("turn observer %r failed at the end of turn %s", observer, turn.id)

    def closed(self, turn: Turn) -> None:
        self._each(turn, "after", lambda observer: observer.closed(turn))
