"""``run_turn``: the one path every turn takes, whoever asks (page, widget, CLI, API, tests).

It refuses what cannot run (an empty or too long message, a turn already running, a spent daily
budget), then, holding the session's lock, runs the team on the user's text and yields the typed
events of :mod:`chorus.events`, ending with exactly one :class:`~chorus.events.DoneEvent`. What the
turn carries lives in one :class:`~chorus.turn.state.Turn`; the tracer, the cost ledger and any
later consumer watch it through :mod:`chorus.turn.observers`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from autogen_agentchat.base import TaskResult
from autogen_agentchat.messages import BaseChatMessage, TextMessage
from autogen_core import CancellationToken

from chorus.approvals import Gate, current_gate
from chorus.attachments import Attachment, with_attachments
from chorus.events import (
    ApprovalDoneEvent,
    ApprovalEvent,
    DoneEvent,
    ErrorEvent,
    MessageEvent,
    NoticeEvent,
    StopReason,
    TokenEvent,
    TurnEvent,
)
from chorus.models import ModelError
from chorus.plugins._guards import TurnGuards, current_guards
from chorus.store.checkpoints import Saved
from chorus.teams.iterative import APPROVED_BY
from chorus.teams.registry import team_type
from chorus.teams.sequential import Pipeline
from chorus.teams.swarm import ANSWERED
from chorus.text import clean_text
from chorus.turn import approving, guarding, pipeline
from chorus.turn.container import Chorus
from chorus.turn.errors import ChorusError
from chorus.turn.observers import Observers
from chorus.turn.session import ChatSession
from chorus.turn.state import Turn, TurnBudget
from chorus.turn.translate import USER, Progress, translate

log = logging.getLogger(__name__)

BUSY = "The team is still answering your previous message: wait for it, or press stop."


async def run_turn(
    session: ChatSession,
    text: str,
    *,
    message_id: str | None = None,
    attachments: Sequence[Attachment] = (),
    turn_id: str | None = None,
) -> AsyncGenerator[TurnEvent, None]:
    """Run one turn of ``session`` with the user's ``text``; yields events, ``done`` last.

    ``turn_id`` names the turn in the cost ledger and its MLflow trace (a new one when None).

    ``attachments`` (files the user attached, as text) follow the text in the team's task.
    ``message_id`` identifies the user's message. Running again with the id of an earlier
    message (the user edited it) first rewinds the team to where it was before that message,
    so the agents forget it and everything after it.

    Input the user got wrong (empty, too long, a turn already running) ends in
    an ``error`` event and ``done`` with ``stop_reason="rejected"``; the
    session is untouched. A model failure ends in ``error`` and ``done`` with
    ``"error"``; a stop in ``"stopped"``. In both cases the team is rewound
    to where it was before the turn, so the next message works.
    """
    started = time.perf_counter()
    text = clean_text(text) if isinstance(text, str) else ""
    settings = session.chorus.settings
    rejection = _refusal(session, text, attachments)
    spent_today = 0.0
    if rejection is None:
        spent_today = await _spent_today(session)
        cap = settings.user_daily_cost_budget
        if cap is not None and spent_today >= cap and session.personal is None:  # (their own key: theirs to spend)
            rejection = ("budget", f"You have used today's budget of ${cap:,.2f} for model calls "
                                   f"(${spent_today:,.4f} spent). It renews at midnight UTC.")
        elif session.busy:  # another message got in while the spending was read
            rejection = ("busy", BUSY)
    if rejection is None and guarding.has(session, "input"):
        checked = await guarding.check_message(session, text) if text else None
        if checked is not None and checked.blocked is not None:
            rejection = ("guard_blocked", f"Your message was not sent to the team: {checked.blocked}.")
        text = checked.text if checked is not None else text
        files = []
        for attached in attachments if rejection is None else ():  # attached files go to the team too
            looked = await guarding.check_message(session, attached.text)
            if looked.blocked is not None:
                rejection = ("guard_blocked", f"Your file {attached.name} was not sent to the team: {looked.blocked}.")
                break
            files.append(replace(attached, text=looked.text))
        else:
            attachments = files
    if rejection is not None:
        yield ErrorEvent(code=rejection[0], message=rejection[1])
        yield DoneEvent(stop_reason="rejected", detail=rejection[0], duration_ms=_ms(started))
        return

    typed = text
    if attachments:
        text = with_attachments(text, [replace(a, text=clean_text(a.text)) for a in attachments])
        if session.tool_context is not None:  # searchable in this conversation's later turns
            from chorus.memory.files import conversation_files

            conversation_files(session.tool_context).add(attachments, keep=session.checkpoints is not None)
    daily = settings.user_daily_cost_budget
    if session.personal is not None:
        daily = None  # the deployment's daily budget is for the deployment's key
    budget = TurnBudget(max_tokens=settings.turn_token_budget or None,  # 0 = no cap
                        max_cost=None if daily is None else daily - spent_today, daily_cap=daily)
    turn = Turn(id=turn_id or uuid.uuid4().hex, session=session, text=text, typed=typed, message_id=message_id,
                budget=budget, started=started)
    async with session._lock:
        session.turn = turn
        if session.tool_context is not None:
            session.tool_context.user_message = typed  # what tools may trust as the user's own words
        observers = Observers(session.chorus.turn_observers())
        observers.begin(turn)
        steps = _steps(turn)
        try:
            async for event in steps:
                observers.event(turn, event)
                if isinstance(event, DoneEvent):
                    await observers.end(turn, event)
                yield event
        finally:
            try:
                await steps.aclose()  # a consumer that stops reading must end the team's run too
                if not observers.ended:  # cut off: the reader went away, or the page's stop cancelled it
                    turn.drain()  # the calls it made still cost money
                    await observers.end(turn, DoneEvent(stop_reason="stopped", detail="the reader went away",
                                                        turn_id=turn.id))
            finally:  # (even when that was interrupted: observers let go of the turn)
                session.turn = None
                observers.closed(turn)


def _refusal(session: ChatSession, text: str, attachments: Sequence[Attachment]) -> tuple[str, str] | None:
    limit = session.chorus.settings.max_message_chars
    if not text and not attachments:
        return "empty_message", "Your message is empty: type a question for the team."
    if len(text) > limit:
        return ("message_too_long", f"Your message has {len(text):,} characters; the limit is {limit:,}. "
                                    "Shorten it, or split it into several messages.")
    if session.busy:
        return "busy", BUSY
    return None


async def _spent_today(session: ChatSession) -> float:
    """What the user spent today, when a daily budget is set (0 when unknown: never block on it)."""
    if session.ledger is None or session.chorus.settings.user_daily_cost_budget is None:
        return 0.0
    try:
        return await session.ledger.spent_today(session.user_id)
    except Exception as exc:
        log.error("could not read today's spending of %s: %s", session.user_id, exc)
        return 0.0


async def _steps(turn: Turn) -> AsyncGenerator[TurnEvent, None]:
    """The turn itself, once it holds the session: rewind for an edit, run the team, rewind on a
    stop or a failure, checkpoint, and say ``done``."""
    session = turn.session
    message_id = turn.message_id
    await session._prepared()
    earlier = None if message_id is None else await session._state_before(message_id)
    if earlier is not None:
        # An edit: forget this message's turn and every later one, then answer the new text.
        await session.restore(earlier)
        yield NoticeEvent(text="The team was rewound to before your edited message.", code="rewound")
    built = session.built
    assert built is not None, "ChatSession.build() was not called"
    team = built.team
    # The state before this turn is the one the last turn left (saved then, or restored since).
    snapshot: Mapping[str, Any] = session._state if session._state is not None else await session._save()
    session._state = None  # the turn changes the team: saved anew when it ends
    # ...and when the store holds it (it usually does), the turn state is a reference to it.
    before: Mapping[str, Any] | Saved = snapshot
    if session._saved is not None and session._saved.state is snapshot:
        before = session._saved
    if message_id is not None:
        session._before[message_id] = before
    token = turn.cancel
    streamed: set[str] = set()
    stop_reason: StopReason = "completed"
    detail = ""
    restore = False
    # The team runs in its own task and hands items over through a queue, so that a
    # cancelled consumer can cancel the team's token *before* waiting for it to wind down
    # (iterating run_stream directly would first wait for the model to finish talking).
    steps = team_type(session.spec.type, session.chorus.registry).steps(session.spec)
    progress = Progress(steps) if steps else None  # "step 3 of 5: coder", for a pipeline or a graph
    run_task: str | list[BaseChatMessage] = turn.text
    # A pipeline keeps each finished step (a restart in the middle resumes with them), and goes on
    # from the next step when the user says so after such a restart (chorus.turn.pipeline).
    members = [m.name for m in built.members]
    kept = pipeline.Interrupted(request=turn.text, total=len(members)) if isinstance(team, Pipeline) else None
    interrupted, session.interrupted = session.interrupted, None
    upcoming = interrupted.next_member(members) if interrupted is not None else None
    if (kept is not None and interrupted is not None and upcoming is not None and earlier is None
            and pipeline.wants_to_continue(turn.text)):
        assert isinstance(team, Pipeline)
        kept = interrupted
        team.continuing = True
        run_task = [TextMessage(content=kept.request, source=USER),
                *(TextMessage(content=content, source=agent) for agent, content in kept.done)]
        if progress is not None:
            progress.step = len(kept.done)
        yield NoticeEvent(text=f"Going on from step {len(kept.done) + 1} of {kept.total} ({upcoming}), with the "
                               "finished steps' results.", code="pipeline_continued")
    guarded = guarding.has(session, "output")
    queue: asyncio.Queue[Any] = asyncio.Queue()
    gate = approving.gate_for(turn, queue.put_nowait)  # its requests and answers come through the queue
    producer = asyncio.create_task(_pump(team, run_task, token, queue, guarding.tool_guards(session), gate),
                                   name=f"chorus-turn-{session.thread_id}")
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            for usage in turn.drain():
                yield usage
            for notice in turn.notices():
                yield notice
            if isinstance(item, (ApprovalEvent, ApprovalDoneEvent)):  # a tool waits for the user (or did)
                yield item
                continue
            if isinstance(item, TaskResult):
                stop_reason, detail = _stop_reason(item, turn.stopped)
                continue
            for event in translate(item, streamed):
                moved = progress.see(event) if progress is not None else None
                if moved is not None:
                    yield moved
                if guarded:  # replies whole and checked, before anyone sees them (chorus.turn.guarding)
                    if isinstance(event, TokenEvent):
                        continue
                    event = await guarding.checked(turn, event)
                if isinstance(event, MessageEvent):
                    turn.messages += 1
                    turn.agents.append(event.agent)
                    if kept is not None:
                        kept.done.append((event.agent, event.content))
                        await session._checkpoint_step(snapshot, kept)
                yield event
    except GeneratorExit:
        # The consumer stopped reading (closed the generator): end the team's run the same way.
        token.cancel()
        await asyncio.wait([producer], timeout=10)
        await session.restore(snapshot)
        if kept is not None and turn.stopped and not turn.keep_progress:
            await asyncio.shield(session._forget_steps(snapshot))
        raise
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # The consumer was cancelled (the page's stop button cancels its task): stop the
            # team's run, rewind it, and let the cancellation go on.
            token.cancel()
            await asyncio.wait([producer], timeout=10)
            await session.restore(snapshot)
            if kept is not None and turn.stopped and not turn.keep_progress:
                await asyncio.shield(session._forget_steps(snapshot))
            raise
        # The team's run was cancelled from inside: by our stop(), or by a cancelled model call.
        restore = True
        if not turn.stopped:
            stop_reason, detail = "error", "the team's run was cancelled"
            yield ErrorEvent(code="cancelled", message="The team's run was interrupted; your message was kept.")
    except Exception as exc:
        restore = True
        if turn.stopped:
            stop_reason, detail = "stopped", "stopped by the user"
        else:
            # (the first line: AutoGen's wrapped error text goes on with the traceback)
            first = str(exc).splitlines()[0] if str(exc) else ""
            stop_reason, detail = "error", f"{type(exc).__name__}: {first}"
            yield _failure(session, exc)
    if turn.budget.reason and not turn.stopped:
        stop_reason, detail = "budget", turn.budget.reason
        yield NoticeEvent(text=turn.budget.reason, level="warning", code="budget")
    if turn.stopped and stop_reason != "stopped":
        stop_reason, detail = "stopped", "stopped by the user"
    kind = team_type(session.spec.type, session.chorus.registry)
    said = kind.stop_notice(session.spec, stop_reason)  # an iterative team's, say
    if said:
        yield NoticeEvent(text=said, level="warning", code=f"team_{stop_reason}")
    if stop_reason not in ("stopped", "error") and turn.messages == 0 and said:
        restore = True  # the type's notice says why nothing was answered (a swarm passing it around)
    elif stop_reason not in ("stopped", "error") and turn.messages == 0:
        # Never end silently: a team that ended without a reply is a failure the user must see.
        log.error("team %s ended a turn without any reply (thread=%s): %s", session.team_name, session.thread_id,
                  detail)
        stop_reason, restore = "error", True
        yield ErrorEvent(code="no_answer", message="The team ended without answering; please send that again.")
    if stop_reason == "stopped":
        restore = restore or token.is_cancelled()
    if restore:
        await session.restore(snapshot)
    for usage in turn.drain():
        yield usage
    for late in turn.notices():
        yield late
    if kept is not None and kept.done and turn.stopped and turn.keep_progress:
        # The server is stopping mid-pipeline: the finished steps stay saved, to go on from after the restart.
        session.interrupted = kept
        saved = None
    else:
        if turn.rewrites and not restore:
            await guarding.rewrite_memory(session, turn.rewrites)
        saved = await session._checkpoint(before=None if message_id is None else (message_id, before))
        if turn.stopped:
            session.interrupted = None  # the user stopped it: a pipeline's steps are not offered again
    if saved is not None:
        yield saved
    yield DoneEvent(
        stop_reason=stop_reason,
        detail=detail,
        messages=turn.messages,
        prompt_tokens=turn.prompt_tokens,
        completion_tokens=turn.completion_tokens,
        cost=turn.cost,
        duration_ms=turn.elapsed_ms(),
        agents=turn.agents,
        turn_id=turn.id,
    )


def _failure(session: ChatSession, exc: Exception) -> ErrorEvent:
    """What the user is told of a failed turn (which agent failed, never a traceback); the log gets the rest.

    AutoGen hands a member's exception back as a ``RuntimeError`` of its text with the traceback
    appended; the model client tells the turn which agent's call failed and with what
    (``Turn.failure``), so the user reads the original error and the agent's name.
    """
    where = f"team={session.team_name} user={session.user_id} thread={session.thread_id}"
    turn = session.turn
    failed = turn.failure if turn is not None else None
    agent: str | None = None
    original: BaseException = exc
    if failed is not None and (failed[1] is exc or str(exc).startswith(f"{type(failed[1]).__name__}: {failed[1]}")):
        agent, original = failed  # the model call whose error AutoGen wrapped (not another member's)
    if isinstance(original, (ModelError, ChorusError)):
        log.warning("model call failed (%s, agent=%s): %s", where, agent, original)
        several = session.built is not None and len(session.built.members) > 1
        message = f"{agent}: {original}" if agent and several else str(original)
        return ErrorEvent(code="model_error" if isinstance(original, ModelError) else "turn_failed",
                          message=message)
    log.exception("turn failed (%s)", where, exc_info=exc)
    text = str(original).split("\nTraceback:", 1)[0].strip()  # AutoGen's wrapped text ends with the traceback
    kind = type(original).__name__
    if kind == "RuntimeError" and re.match(r"^\w+(Error|Exception|Exhausted|Stalled|Passed|Refused): ", text):
        kind, text = text.split(": ", 1)  # "ValueError: ..." wrapped by AutoGen: show the original type
    who = f" while {agent} was answering" if agent else ""
    return ErrorEvent(code="turn_failed", message=f"The team failed to answer{who} ({kind}: {text[:500]}). "
                                                  "Your message was kept; try again.")


def _stop_reason(result: TaskResult, stopped: bool) -> tuple[StopReason, str]:
    """Why AutoGen's run ended, as a stop reason and a sentence of Chorus's own (AutoGen's text,
    such as "Maximum number of messages 2 reached, current message count: 2", is internal)."""
    said = result.stop_reason or ""
    if stopped:
        return "stopped", "stopped by the user"
    if APPROVED_BY in said:  # (approved in the last round: AutoGen joins it with the message cap's text)
        approver = said[said.index(APPROVED_BY):].split(",")[0].strip()
        return "completed", f"{approver}: the answer is complete."
    if ANSWERED in said:  # a swarm's member answered (perhaps as the message cap was reached)
        return "completed", "The team finished its answer."
    low = said.lower()
    if "maximum number of messages" in low:
        limit = re.search(r"maximum number of messages (\d+)", low)
        return "max_messages", ("The team had its say: it answers in at most "
                                f"{limit.group(1) if limit else 'a set number of'} messages a turn.")
    mention = re.search(r"text '([^']*)' mentioned", said, re.IGNORECASE)
    if mention or ("text" in low and "mentioned" in low):
        word = f" ({mention.group(1)})" if mention else ""
        return "text_mention", f"An agent said the team's closing word{word}: the answer is complete."
    if "external" in low:
        return "stopped", "stopped by the user"
    return "completed", "The team finished its answer."


_END = object()


async def _pump(team: Any, task: str | list[BaseChatMessage], token: CancellationToken,
                queue: asyncio.Queue[Any], guards: TurnGuards | None = None, gate: Gate | None = None) -> None:
    """Run the team and put every item (or the exception that ended it) on ``queue``, then _END.

    ``task`` is the user's text, or the messages a continued pipeline replays (not shown again).
    ``guards`` check the tools' results before the model reads them, and ``gate`` lets the tools that
    need approval run (both in this task's context)."""
    current_guards.set(guards)
    current_gate.set(gate)
    replayed = not isinstance(task, str)
    messages = task if not isinstance(task, str) else TextMessage(content=task, source=USER)
    try:
        async for item in team.run_stream(task=messages, cancellation_token=token, output_task_messages=not replayed):
            queue.put_nowait(item)
    except BaseException as exc:  # handed to the consumer, who decides what it means
        queue.put_nowait(exc)
    finally:
        queue.put_nowait(_END)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def ask(chorus: Chorus, text: str, *, team: str | None = None, user_id: str = "local") -> list[TurnEvent]:
    """One turn in a fresh session, all events collected (for scripts and tests)."""
    await chorus.connect_tools(team)
    session = chorus.open_session(team, user_id=user_id)
    return [event async for event in run_turn(session, text)]
