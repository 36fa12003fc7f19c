"""The turn's approval gate (:mod:`chorus.approvals`): a call of a tool that needs approval is stored,
shown (an :class:`~chorus.events.ApprovalEvent` among the turn's events) and waits for its user.

How an answer reaches the waiting call: in this process, at once (:data:`WAITING`); from another
process (a second worker, the runs API), through the database, which the waiting call reads every
:data:`POLL_S` seconds. When no turn waits any more (the page was reloaded, the server restarted),
the request stays stored; its answer is then *standing*: the turn that goes on with the user's
request (:func:`chorus.web.approvals.go_on`) finds it when the agent makes the same call again, and
acts on it without asking twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from chorus.approvals import Approvals
from chorus.events import ApprovalDoneEvent, ApprovalEvent, TurnEvent
from chorus.store import approvals as store
from chorus.store.approvals import ANSWERED, Approval

if TYPE_CHECKING:
    from chorus.turn.session import ChatSession
    from chorus.turn.state import Turn

log = logging.getLogger(__name__)

POLL_S = 1.0
"""How often a waiting call reads an answer given in another process."""


@dataclass
class Waiter:
    """A call waiting in this process: its answer arrives through ``future``; ``detached`` when a reload
    took the conversation to another page (the request then stays pending, for that page)."""

    session: ChatSession
    future: asyncio.Future[None]
    detached: bool = False


WAITING: dict[str, Waiter] = {}
"""The calls waiting in this process, by request id."""


def wake(approval_id: str) -> bool:
    """Tell the call waiting for ``approval_id`` in this process that it was answered (True if one waits)."""
    waiter = WAITING.get(approval_id)
    if waiter is None or waiter.detached:
        return False
    if not waiter.future.done():
        waiter.future.set_result(None)
    return True


async def detach(session: ChatSession, thread_id: str, wait_s: float = 10.0) -> int:
    """A reload reopened ``thread_id`` in ``session``: the turns of other pages that wait there for an
    answer are stopped (their requests stay pending, for this page to show), and waited for, so that
    what they save comes before what this page does. How many were stopped."""
    stopped = []
    for waiter in list(WAITING.values()):
        if waiter.session is session or waiter.session.thread_id != thread_id or waiter.detached:
            continue
        waiter.detached = True
        waiter.session.stop()
        stopped.append(waiter.session)
    deadline = asyncio.get_running_loop().time() + wait_s
    while any(s.busy for s in stopped) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    return len(stopped)


def described(tool: str, arguments: Mapping[str, Any]) -> str:
    """``tool(a=1, b="x")``, as the user reads it."""
    shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in arguments.items())
    return f"{tool}({shown})"


def outcome_for_model(found: Approval) -> str | None:
    """What the model is told instead of the result when the answer was not yes (None for yes). Worded
    for the user too: a model (the offline one) may pass it on as it is."""
    if found.status == "approved":
        return None
    call = described(found.tool, found.arguments)
    if found.status == "denied":
        why = f" (their reason: {found.reason})" if found.reason else ""
        return f"Not run: the user denied {call}{why}, so nothing was done."
    if found.status == "expired":
        return (f"Not run: {call} waited for the user's approval without an answer, which counts as a denial, "
                "so nothing was done. Ask again to try once more.")
    return f"Not run: the approval request for {call} was {found.status}, so nothing was done."


@dataclass
class TurnGate:
    """What the turn's tool calls pass (:class:`chorus.approvals.Gate`); ``emit`` puts an event among the
    turn's events (the runner's queue)."""

    turn: Turn
    emit: Callable[[TurnEvent], None]
    needs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    approvals: Approvals | None = None

    async def permit(self, tool: str, arguments: Mapping[str, Any]) -> str | None:
        if tool not in self.needs:
            return None
        if self.approvals is None:
            return (f"Not run: {described(tool, arguments)} needs the user's approval, which can only be given on "
                    "the chat page (or for a background run), so nothing was done here.")
        engine, session = self.approvals.engine, self.turn.session
        async with _claiming():  # one call at a time finds or makes its request, and says it waits for it
            found = await store.standing(engine, thread_id=session.thread_id, tool=tool, arguments=arguments,
                                         run_id=self.approvals.run_id, within_s=self.approvals.timeout_s)
            if found is not None and found.status in ANSWERED:  # answered while no turn waited for it
                if await store.mark_used(engine, found.id):
                    self._done(found)
                    return outcome_for_model(found)
                found = None
            if found is not None and found.id in WAITING and not WAITING[found.id].detached:
                found = None  # another call waits for it (the same call twice in one reply): this one asks too
            if found is None:
                holders = self.needs.get(tool) or ()
                agent = holders[0] if len(holders) == 1 else (self.turn.agents[-1] if self.turn.agents else "an agent")
                found = await store.create(engine, thread_id=session.thread_id, user=session.user_id,
                                           team=session.spec.name, agent=agent, tool=tool, arguments=arguments,
                                           request=self.turn.typed, timeout_s=self.approvals.timeout_s,
                                           run_id=self.approvals.run_id)
            waiter = Waiter(session, asyncio.get_running_loop().create_future())
            WAITING[found.id] = waiter
        remaining = (found.expires_at - store.now()).total_seconds()
        self.emit(ApprovalEvent(id=found.id, agent=found.agent, tool=tool, arguments=dict(arguments),
                                expires_in_s=max(0.0, round(remaining, 1))))
        return await self._wait(found, waiter)

    async def _wait(self, found: Approval, waiter: Waiter) -> str | None:
        assert self.approvals is not None
        engine = self.approvals.engine

        # The stop button (and a reload, and the server stopping) cancels the turn's token, which AutoGen
        # does not hand to the tool: wake up on it, or the team's run would wait for the answer.
        def on_stop() -> None:
            if not waiter.future.done():
                waiter.future.set_result(None)

        self.turn.cancel.add_callback(on_stop)
        try:
            while True:
                if self.turn.cancel.is_cancelled():
                    return await self._stopped(found, waiter)
                remaining = (found.expires_at - store.now()).total_seconds()
                if remaining <= 0 and await store.settle(engine, found.id, "expired"):
                    expired = await store.get(engine, found.id)
                    assert expired is not None
                    self._done(expired)
                    return outcome_for_model(expired)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter.future), timeout=max(0.05, min(POLL_S, remaining)))
                now = await store.get(engine, found.id)
                if now is None:  # deleted with its conversation
                    return outcome_for_model(_as(found, "cancelled"))
                if now.status in ANSWERED:
                    if not await store.mark_used(engine, now.id):  # another call acted on this answer
                        return (f"Not run: the approval of {described(now.tool, now.arguments)} was already used "
                                "by another call, so nothing more was done.")
                    self._done(now)
                    return outcome_for_model(now)
                if now.status != "pending":
                    self._done(now)
                    return outcome_for_model(now)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self.turn.cancel.is_cancelled() or task is None:
                if not waiter.detached and not self.turn.keep_progress:
                    await asyncio.shield(_quietly(store.settle(engine, found.id, "cancelled")))
                raise
            # Cancelled through the turn's token, which AutoGen links to the tool's task: a tool that
            # raises CancelledError leaves AssistantAgent waiting for its results for ever, so it
            # returns (or raises another error) instead, and the stopped run winds down as after any tool.
            task.uncancel()
            return await self._stopped(found, waiter)
        finally:
            if WAITING.get(found.id) is waiter:
                del WAITING[found.id]

    async def _stopped(self, found: Approval, waiter: Waiter) -> str:
        """The turn was stopped while the call waited. By the user: the request is withdrawn. By a reload
        or the server stopping: it stays pending, shown again where the conversation opens next. In a
        background run it raises, so that the run's journal does not keep "not run" as the tool's
        result: the run taken up again after a restart waits for the same request."""
        assert self.approvals is not None
        engine, run_id = self.approvals.engine, self.approvals.run_id
        keep = waiter.detached or self.turn.keep_progress
        if run_id is not None and not keep:
            from chorus.store.runs import cancel_requested

            try:
                keep = not await cancel_requested(engine, run_id)  # not the user's cancel: the server stopping
            except Exception:
                keep = True
        if not keep and await _settled(engine, found.id):
            self._done(_as(found, "cancelled"))
        if run_id is not None and keep:
            # The server is stopping: this attempt must not go on at all (a model call made now could be
            # answered and lost before the journal keeps it). It waits until the process ends; the run
            # taken up after the restart waits for the same request.
            await asyncio.Event().wait()
        if run_id is not None:
            raise RuntimeError(f"the run was stopped while {found.tool} waited for the user's approval")
        return _stopped(found.tool)

    def _done(self, found: Approval) -> None:
        self.emit(ApprovalDoneEvent(id=found.id, tool=found.tool, status=found.status, reason=found.reason))


def _stopped(tool: str) -> str:
    return f"Not run: the turn was stopped before the user answered about {tool}, so nothing was done."


def _as(found: Approval, status: str) -> Approval:
    return replace(found, status=status)


_CLAIMS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _claiming() -> asyncio.Lock:
    """Held while a call finds or makes its request and registers as its waiter: one lock per event loop
    (an asyncio lock belongs to the loop it first waited in)."""
    loop = asyncio.get_running_loop()
    lock = _CLAIMS.get(loop)
    if lock is None:
        lock = _CLAIMS[loop] = asyncio.Lock()
    return lock


async def _settled(engine: Any, approval_id: str) -> bool:
    try:
        return await store.settle(engine, approval_id, "cancelled")
    except Exception as exc:
        log.warning("could not withdraw approval request %s: %s", approval_id, exc)
        return False


async def _quietly(call: Any) -> None:
    try:
        await call
    except Exception as exc:
        log.warning("could not close an approval request: %s", exc)


def gate_for(turn: Turn, emit: Callable[[TurnEvent], None]) -> TurnGate:
    """The gate of ``turn``'s tool calls, putting its events through ``emit``."""
    session = turn.session
    needs = session.built.approvals if session.built is not None else {}
    return TurnGate(turn=turn, emit=emit, needs=needs, approvals=session.approvals)


__all__ = ["POLL_S", "WAITING", "TurnGate", "detach", "gate_for", "wake"]
