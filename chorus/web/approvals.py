"""Approvals on the page (README, "Approvals"): a tool call that needs one is shown with its agent, tool
and arguments and two buttons; the answer goes to the waiting turn (:mod:`chorus.turn.approving`).

The request is stored, so it outlives the page. A reload (or a lost connection, or another tab)
reopens the conversation in a new session: the old page's waiting turn is stopped, the request is
shown again with its buttons, and once answered a new turn goes on with the user's request, finding
the answer standing when the agent makes the same call. After a restart it is the same, the old
turn being gone with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import chainlit as cl

from chorus.approvals import Approvals
from chorus.events import ApprovalDoneEvent, ApprovalEvent
from chorus.store import approvals as store
from chorus.store.approvals import Approval, ApprovalError
from chorus.turn import ChatSession
from chorus.turn.approving import detach, wake
from chorus.web.context import SYSTEM, current

log = logging.getLogger("chorus.app")

APPROVE, DENY = "chorus_approve", "chorus_deny"
TAKEN_ELSEWHERE_S = 2.0  # how long an answer may take to reach a turn waiting in another process
OUTCOMES = {"approved": "✅ Approved", "denied": "❌ Denied", "expired": "⌛ Expired: no answer in time, so not run",
            "cancelled": "⏹️ Withdrawn: the turn was stopped"}


ShowTurn = Callable[..., Awaitable[None]]
_show_turn: ShowTurn | None = None


def register(show_turn: ShowTurn) -> None:
    """The buttons' callbacks; ``show_turn`` (chorus.web.handlers) runs and draws a turn."""
    global _show_turn
    _show_turn = show_turn
    cl.action_callback(APPROVE)(on_answer)
    cl.action_callback(DENY)(on_answer)


def approvals_for_chat() -> Approvals:
    """How the page's conversations ask (set on every session the page opens)."""
    web = current()
    return Approvals(engine=web.engine(), timeout_s=web.chorus.settings.approval_timeout)


def _actions(approval_id: str) -> list[cl.Action]:
    # Ids of their own, so that both buttons can be taken away whichever was pressed, from any page.
    return [cl.Action(name=APPROVE, payload={"id": approval_id}, label="Approve", icon="check",
                      id=f"{approval_id}-approve"),
            cl.Action(name=DENY, payload={"id": approval_id}, label="Deny", icon="x", id=f"{approval_id}-deny")]


def request_text(agent: str, tool: str, arguments: dict[str, Any], expires_in_s: float, *, again: bool = False) -> str:
    shown = json.dumps(arguments, indent=2, ensure_ascii=False, default=str)
    minutes = max(1, round(expires_in_s / 60))
    lead = "⏸️ Still waiting for your answer: " if again else "🔐 "
    return (f"{lead}**{agent}** wants to run **{tool}** with:\n\n```json\n{shown}\n```\n\n"
            f"Approve or deny. Without an answer within {minutes} minute{'s' if minutes != 1 else ''} it is not run.")


class ApprovalMessages:
    """A turn's approval requests on the page, by id (the renderer's share of them)."""

    def __init__(self) -> None:
        self.shown: dict[str, cl.Message] = {}

    async def ask(self, event: ApprovalEvent) -> None:
        msg = cl.Message(content=request_text(event.agent, event.tool, event.arguments, event.expires_in_s),
                         author=event.agent, actions=_actions(event.id), metadata={"approval": event.id})
        self.shown[event.id] = msg
        await msg.send()

    async def settled(self, event: ApprovalDoneEvent) -> None:
        msg = self.shown.pop(event.id, None)
        outcome = OUTCOMES.get(event.status, event.status) + (f" ({event.reason})" if event.reason else "")
        for action in _actions(event.id):
            await action.remove()
        if msg is not None:  # (else it was answered before this turn asked: the page already says so)
            msg.actions = []
            msg.content = with_outcome(msg.content, outcome)
            await msg.update()


def with_outcome(content: str, outcome: str) -> str:
    """A request's text with its last line (what to do) replaced by what became of it."""
    return f"{content.rsplit(chr(10) * 2, 1)[0]}\n\n**{outcome}.**"


async def take_over(session: ChatSession) -> None:
    """The conversation reopens here (before its saved state is read): a turn of another page that
    waits there for an answer is stopped, its request left pending for this page."""
    await detach(session, session.thread_id)


async def show_pending(session: ChatSession, thread: Any) -> None:
    """Every pending request of the reopened conversation, shown again with its buttons. Shown, not
    stored: the stored conversation already holds the request as it was first asked."""
    try:
        pending = await store.listed(current().engine(), user=session.user_id, thread_id=session.thread_id,
                                     status="pending")
    except Exception as exc:
        log.error("could not read the pending approvals of %s: %s", session.thread_id, exc)
        return
    steps = thread.get("steps") if isinstance(thread, dict) else None
    for found in reversed(pending):
        remaining = (found.expires_at - store.now()).total_seconds()
        msg = cl.Message(content=request_text(found.agent, found.tool, found.arguments, remaining, again=True),
                         author=found.agent, metadata={"approval": found.id})
        await cl.context.emitter.send_step(msg.to_dict())  # on the page, not stored again
        if isinstance(steps, list):  # the page replaces what it shows with the thread Chainlit read
            steps.append(msg.to_dict())
        for action in _actions(found.id):
            await action.send(for_id=msg.id)


async def on_answer(action: cl.Action) -> None:
    """The user pressed Approve or Deny: the answer is stored (theirs only), then reaches the waiting
    turn, or, with none waiting any more, a new turn goes on with their request."""
    approved = action.name == APPROVE
    approval_id = str((action.payload or {}).get("id") or "")
    user = str(getattr(cl.user_session.get("user"), "identifier", "") or "anonymous")
    web = current()
    session = cl.user_session.get("chorus")
    if not isinstance(session, ChatSession):  # (the buttons come with a chat: it has its session)
        await cl.Message(content="⚠️ This chat has ended; reload the page to answer.", author=SYSTEM).send()
        return
    try:
        # Only a request of this conversation and this user (an action's payload comes from the page).
        asked = await store.get(web.engine(), approval_id, user=user)
        if asked is None or asked.thread_id != session.thread_id:
            raise ApprovalError("There is no such approval request in this conversation.")
        found = await store.decide(web.engine(), approval_id, user=user, approved=approved)
    except ApprovalError as exc:
        await cl.Message(content=f"⚠️ {exc}", author=SYSTEM).send()
        return
    except Exception as exc:
        log.error("could not take an answer to approval %s: %s", approval_id, exc)
        await cl.Message(content="⚠️ Your answer could not be saved; please try again.", author=SYSTEM).send()
        return
    for button in _actions(approval_id):
        await button.remove()
    if wake(approval_id):
        return  # the turn that asked goes on, here, and its request on the page says what became of it
    if action.forId:  # the request shown again after a reload: it says so too
        shown = cl.Message(id=action.forId, author=found.agent, metadata={"approval": found.id},
                           content=with_outcome(request_text(found.agent, found.tool, found.arguments, 0, again=True),
                                                OUTCOMES[found.status]))
        await cl.context.emitter.update_step(shown.to_dict())
    if await _taken_elsewhere(approval_id):
        await cl.Message(content=f"{OUTCOMES[found.status]}. The turn that asked is running in another window or "
                                 "server; its answer appears there, and here once you reload.", author=SYSTEM).send()
        return
    task = asyncio.ensure_future(go_on(session, found))
    web.running[task] = session  # stopped like any turn when the server stops


async def _taken_elsewhere(approval_id: str) -> bool:
    """Whether a turn waiting in another process takes the answer within TAKEN_ELSEWHERE_S."""
    engine = current().engine()
    deadline = asyncio.get_running_loop().time() + TAKEN_ELSEWHERE_S
    while asyncio.get_running_loop().time() < deadline:
        found = await store.get(engine, approval_id)
        if found is None or found.used:
            return found is not None
        await asyncio.sleep(0.2)
    return False


async def go_on(session: ChatSession, found: Approval) -> None:
    """A new turn with the user's request, after they answered a request no turn waits for any more."""
    from chorus.web.queue import line, wait_in_line

    web = current()
    queue = line()
    before, mine, stops = queue.join()
    try:
        await cl.Message(content=f"{OUTCOMES[found.status]}. Going on with your request: “{found.request}”",
                         author=SYSTEM).send()
        if before is not None and not before.done() and not await wait_in_line(before, queue, stops):
            return
        if session.checkpoints is not None and not session.busy:
            await session.resume()  # as the conversation was last saved (another tab may have gone on)
        assert _show_turn is not None, "chorus.web.approvals.register() was not called"
        await _show_turn(session, found.request, message_id=None, turn_id=uuid.uuid4().hex)
    except Exception:
        log.exception("could not go on with thread %s after an approval", session.thread_id)
    finally:
        queue.leave(before, mine)
        # An answer the turn did not act on (the agent called the tool otherwise, or not at all) does not
        # stay standing for some later call.
        with contextlib.suppress(Exception):
            await store.mark_used(web.engine(), found.id)
        web.running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
