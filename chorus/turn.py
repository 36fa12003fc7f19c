"""``run_turn``: the one path every turn takes, whoever asks (page, widget, CLI, tests).

A :class:`Chorus` holds what a process loads once (settings, plugins, teams).
A :class:`ChatSession` is one conversation with one team: it owns the built
AutoGen team, so the team remembers earlier turns. :func:`run_turn` takes the
user's text and yields the typed events of :mod:`chorus.events`, ending with
exactly one :class:`~chorus.events.DoneEvent`. Nothing here imports Chainlit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from autogen_agentchat.base import TaskResult
from autogen_agentchat.messages import (
    BaseChatMessage,
    HandoffMessage,
    MemoryQueryEvent,
    ModelClientStreamingChunkEvent,
    SelectSpeakerEvent,
    TextMessage,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
)
from autogen_core import CancellationToken
from autogen_core.memory import Memory

from chorus._version import __version__
from chorus.attachments import Attachment, with_attachments
from chorus.events import (
    DoneEvent,
    ErrorEvent,
    HandoffEvent,
    MessageEvent,
    NoticeEvent,
    RetrievalEvent,
    SelectionEvent,
    StopReason,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
    UsageEvent,
)
from chorus.memory import MemoryService
from chorus.models import OFFLINE_NOTICE, CallRecord, ModelError, validate_model
from chorus.plugins._specs import ToolContext
from chorus.plugins.manager import Registry, load_plugins
from chorus.settings import OFFLINE_MODEL, Settings, get_settings
from chorus.store import tool_state
from chorus.store.checkpoints import CheckpointStore, Saved, TeamStates
from chorus.store.usage import UsageLedger, UsageRow
from chorus.teams import BuiltTeam, TeamCatalog, TeamSpec, build_team, load_teams
from chorus.text import clean_text
from chorus.tracing import Tracer

log = logging.getLogger(__name__)

USER = "user"


class ChorusError(Exception):
    """A problem the user (or operator) caused and can fix; the message says how."""


@dataclass
class Chorus:
    """What one process loads once: settings, the plugin registry and the team catalog."""

    settings: Settings
    registry: Registry
    catalog: TeamCatalog
    memory: MemoryService | None = None
    """Per-user memory and the knowledge base (None with ``CHORUS_MEMORY=false``)."""
    tracer: Tracer | None = None
    """MLflow tracing of every turn (None with ``CHORUS_TRACING=false``)."""

    @classmethod
    def load(cls, settings: Settings | None = None, *, extra_plugins: Iterable[tuple[str, object]] = ()) -> Chorus:
        """Load plugins and teams; broken plugins and team files are reported, never fatal."""
        settings = settings or get_settings()
        registry = load_plugins(settings, extra=extra_plugins)
        catalog = load_teams(settings.agents_dir, settings.default_team, registry.teams)
        memory = MemoryService(settings, registry.embedders) if settings.memory else None
        tracer = Tracer(settings, __version__) if settings.tracing else None
        return cls(settings=settings, registry=registry, catalog=catalog, memory=memory, tracer=tracer)

    def team(self, name: str | None = None) -> TeamSpec:
        """The team called ``name`` (default team when None); ChorusError if unknown."""
        try:
            return self.catalog.get(name)
        except KeyError as exc:
            raise ChorusError(exc.args[0]) from None

    def open_session(
        self,
        team: str | None = None,
        *,
        user_id: str = "local",
        thread_id: str | None = None,
        stream: bool = True,
        checkpoints: CheckpointStore | None = None,
        ledger: UsageLedger | None = None,
    ) -> ChatSession:
        """A new conversation with ``team``. Raises ChorusError for an unknown team or model.

        With ``checkpoints``, the team's state is saved after every turn and
        :meth:`ChatSession.resume` restores it. With ``ledger``, every model call is recorded
        and the daily cost budget is enforced.
        """
        spec = self.team(team)
        session = ChatSession(
            chorus=self,
            spec=spec,
            user_id=user_id,
            thread_id=thread_id or uuid.uuid4().hex,
            stream=stream,
            checkpoints=checkpoints,
            ledger=ledger,
        )
        session.build()
        return session

    def uses_offline_model(self, team: str | None = None) -> bool:
        """Whether any member (or the selector) of ``team`` answers with the offline model."""
        from chorus.teams.build import resolve_members

        spec = self.team(team)
        members, _ = resolve_members(spec, self.registry)
        team_model = spec.model or self.settings.model
        models = {m.model or team_model for m in members} | {team_model}
        return OFFLINE_MODEL in models

    def problems(self) -> list[str]:
        """Plugins and team files that failed to load, one line each, for operators only (the log
        at start-up, the CLI): they carry server paths and plugin errors. Users are shown
        :data:`PROBLEMS_NOTICE` instead."""
        lines = list(self.registry.errors)
        lines += [f"plugin {r.name!r} ({r.distribution} {r.version}) was skipped: {r.error}"
                  + (f" [at {r.where}]" if r.where else "") for r in self.registry.problems]
        lines += [f"team file skipped: {e}" for e in self.catalog.errors]
        return lines


PROBLEMS_NOTICE = (
    "Some of this server's plugins or team files are broken and were skipped, so an agent or a team may be "
    "missing. The operator can see which in the server's log or with `chorus plugins` and `chorus teams`."
)
"""What users see about broken plugins and team files: details (paths, errors) are for operators."""
MEMORY_NOTICE = "Memory and the knowledge base are unavailable on this server for now (the server's log says why)."


@dataclass
class ChatSession:
    """One conversation: a team that remembers, keyed by user and thread."""

    chorus: Chorus
    spec: TeamSpec
    user_id: str
    thread_id: str
    stream: bool = True
    checkpoints: CheckpointStore | None = None
    built: BuiltTeam | None = None
    _usage: list[CallRecord] = field(default_factory=list)
    ledger: UsageLedger | None = None
    _budget: _TurnBudget | None = None
    _last_calls: list[CallRecord] = field(default_factory=list)  # the latest turn's model calls, for its trace
    _notices: list[str] = field(default_factory=list)  # from the model clients (a degraded answer)
    _notices_seen: set[str] = field(default_factory=set)  # shown this turn
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _cancel: CancellationToken | None = None
    _stopped: bool = False
    # The team's state before each turn, by the id of the user's message: an edit rewinds to it
    # (as saved in the store, once it is).
    _before: dict[str, Mapping[str, Any] | Saved] = field(default_factory=dict)
    _rewind_failed: bool = False
    _resumed: bool = False  # continues a stored conversation: earlier turn states are in the store
    _preparing: asyncio.Task[None] | None = None  # start_preparing(): the team's runtime, set up ahead
    _state: Mapping[str, Any] | None = None  # the team's state as last saved or restored (saves a save_state)
    _saved: Saved | None = None  # the latest state this session saved or read: the next save writes changes to it
    _states: TeamStates = field(default_factory=TeamStates)  # save_state without re-dumping the whole history
    tool_context: ToolContext | None = None

    def build(self) -> None:
        settings = self.chorus.settings
        service = self.chorus.memory
        if self.tool_context is None:
            self.tool_context = ToolContext(
                user_id=self.user_id, thread_id=self.thread_id, team=self.spec.name,
                memory=service.for_user(self.user_id) if service else None,
                knowledge=service.knowledge if service and service.available else None,
            )
        self.tool_context.team = self.spec.name
        memories: list[Memory] = []
        from chorus.memory.user import RecallMemory, UserMemory

        if isinstance(self.tool_context.memory, UserMemory):  # Chorus's own (a test may hand tools another)
            memories.append(RecallMemory(self.tool_context.memory))
        self.built = build_team(
            self.spec, self.chorus.registry, settings, on_call=self._on_call, stream=self.stream,
            tool_context=self.tool_context, memories=memories, on_notice=self._notices.append,
            other_teams=list(self.chorus.catalog.teams.values()),
        )
        for model in sorted(self.built.models):
            error = validate_model(model)
            if error:
                raise ChorusError(error)

    def start_preparing(self) -> None:
        """Set the new team's runtime up now, in the background, rather than when the first
        message arrives (its agents, and the state a stop or an edit rewinds to).

        For a conversation that starts afresh, called while the user is still typing; the first
        turn waits for it if it is not finished.
        """
        if self.built is None or self._state is not None or self._preparing is not None or self.busy:
            return
        team = self.built.team

        async def prepare() -> None:
            state = tool_state.join(await team.save_state(), self._tools_state())
            if self.built is not None and self.built.team is team and self._state is None:
                self._state = state

        self._preparing = asyncio.ensure_future(prepare())

    async def _prepared(self) -> None:
        """Wait for start_preparing's work, if any (a failure there only means it is done now)."""
        preparing, self._preparing = self._preparing, None
        if preparing is not None:
            await asyncio.wait([preparing])
            if not preparing.cancelled() and preparing.exception() is not None:
                log.debug("preparing the team of thread %s failed: %s", self.thread_id, preparing.exception())

    def _on_call(self, record: CallRecord) -> None:
        """Every finished model call: kept for the turn's usage, and checked against the budgets."""
        self._usage.append(record)
        budget = self._budget
        if budget is not None and budget.add(record) and self.built is not None:
            self.built.stop.set()  # graceful: the team stops at the end of the current reply

    @property
    def team_name(self) -> str:
        return self.spec.name

    @property
    def uses_offline_model(self) -> bool:
        return self.built is not None and OFFLINE_MODEL in self.built.models

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def notices(self) -> list[NoticeEvent]:
        """What the user should see when the conversation opens."""
        notes = []
        if self.uses_offline_model:
            notes.append(NoticeEvent(text=OFFLINE_NOTICE, code="offline_model"))
        # One short, fixed notice: the problems themselves name server paths and carry plugin
        # error text, which the operator reads in the log and `chorus plugins` / `chorus teams`.
        if self.chorus.problems() or (self.built is not None and self.built.problems):
            notes.append(NoticeEvent(text=PROBLEMS_NOTICE, level="warning", code="plugin_problem"))
        service = self.chorus.memory
        if service is not None and service.problem:  # the reason (a path, a URL) is in the log
            notes.append(NoticeEvent(text=MEMORY_NOTICE, level="warning", code="memory_unavailable"))
        return notes

    async def resume(self) -> bool:
        """Load this thread's saved team state (its owner's only); False when there is none."""
        if self.checkpoints is None or self.built is None:
            return False
        saved = await self.checkpoints.load(self.thread_id, self.user_id)
        if saved is None or not await self._load(saved.team, saved.state):
            return False
        self._saved = saved
        self._resumed = True
        return True

    async def _load(self, team: str, state: Mapping[str, Any]) -> bool:
        """Put the team in a saved ``state``; False (and a fresh team) when it no longer fits."""
        if self._adopt_team(team):
            self.build()
        try:
            await self._put(state)
        except Exception as exc:  # the team's members changed since: start afresh rather than half-restored
            log.warning("could not restore thread %s into team %r: %s", self.thread_id, self.spec.name, exc)
            self.build()
            self._state = None
            return False
        self._state = state
        return True

    def _tools_state(self) -> dict[str, Any]:
        return self.tool_context.state if self.tool_context is not None else {}

    async def _save(self) -> Mapping[str, Any]:
        """The conversation's state now: the team's and its tools' (:mod:`chorus.store.tool_state`)."""
        assert self.built is not None
        return tool_state.join(await self._states.save(self.built.team), self._tools_state())

    async def _put(self, state: Mapping[str, Any]) -> None:
        """Put the built team and its tools in a saved ``state`` (the tools' state rewinds with it)."""
        assert self.built is not None
        team, tools = tool_state.split(state)
        await self.built.team.load_state(team)
        await self._states.loaded(self.built.team, team)
        if self.tool_context is not None:
            tool_state.restore(self.tool_context.state, tools)

    async def _state_before(self, message_id: str) -> Mapping[str, Any] | Saved | None:
        """The team's state before the user's message ``message_id``, if it is an earlier message
        of this conversation (so the user edited it); the turns after it are forgotten."""
        if message_id in self._before:
            ids = list(self._before)
            for later in ids[ids.index(message_id) + 1 :]:
                del self._before[later]
            if self.checkpoints is not None:  # forget the abandoned branch in the store too
                try:
                    await self.checkpoints.forget_after(self.thread_id, self.user_id, message_id)
                except Exception as exc:
                    log.error("could not forget the later turn states of thread %s: %s", self.thread_id, exc)
            return self._before[message_id]
        if not self._resumed or self.checkpoints is None:
            return None  # a new message: only a resumed conversation has earlier ones we did not see
        try:
            saved = await self.checkpoints.rewind_to(self.thread_id, self.user_id, message_id)
        except Exception as exc:
            log.error("could not read the saved turn states of thread %s: %s", self.thread_id, exc)
            return None
        if saved is None:
            return None
        self._adopt_team(saved.team)  # the team is rebuilt when the rewind restores this state
        return saved

    def _adopt_team(self, team: str) -> bool:
        """Switch to the team a saved state belongs to (the page may not know it, after a
        crash: the saved one wins); True when it changed."""
        if team == self.spec.name or team not in self.chorus.catalog.teams:
            return False
        self.spec = self.chorus.catalog.teams[team]
        return True

    async def _checkpoint(self, before: tuple[str, Mapping[str, Any] | Saved] | None = None) -> NoticeEvent | None:
        """Save the team's state after a turn (and ``before`` it, for edits); a notice, not a crash,
        when the store fails. Only what changed since the last save is written."""
        if self.checkpoints is None or self.built is None:
            return None
        if self._rewind_failed:
            self._rewind_failed = False
            return None
        try:
            state = await self._save()
            self._state = state
            self._saved, earlier = await self.checkpoints.save(
                self.thread_id, self.user_id, self.spec.name, state, before=before, parent=self._saved)
            if before is not None and earlier is not None and before[0] in self._before:
                self._before[before[0]] = earlier  # an edit of that message reads it from the store
        except Exception as exc:
            log.error("could not checkpoint thread %s: %s", self.thread_id, exc)
            return NoticeEvent(
                text=f"This conversation's memory could not be saved ({exc}); it may be lost on restart.",
                level="warning",
                code="checkpoint_failed",
            )
        return None

    def stop(self) -> None:
        """Stop the running turn now (the stop button). Safe to call when idle."""
        if not self.busy:
            return
        self._stopped = True
        if self.built is not None:
            self.built.stop.set()
        if self._cancel is not None:
            self._cancel.cancel()


def _stop_reason(result: TaskResult, stopped: bool) -> tuple[StopReason, str]:
    """Why AutoGen's run ended, as a stop reason and a sentence of Chorus's own (AutoGen's text,
    such as "Maximum number of messages 2 reached, current message count: 2", is internal)."""
    said = result.stop_reason or ""
    if stopped:
        return "stopped", "stopped by the user"
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
    limit = session.chorus.settings.max_message_chars
    rejection: tuple[str, str] | None = None
    if not text and not attachments:
        rejection = ("empty_message", "Your message is empty: type a question for the team.")
    elif len(text) > limit:
        rejection = (
            "message_too_long",
            f"Your message has {len(text):,} characters; the limit is {limit:,}. "
            "Shorten it, or split it into several messages.",
        )
    elif session.busy:
        rejection = ("busy", "The team is still answering your previous message: wait for it, or press stop.")
    spent_today = 0.0
    if rejection is None:
        spent_today = await _spent_today(session)
        cap = session.chorus.settings.user_daily_cost_budget
        if cap is not None and spent_today >= cap:
            rejection = ("budget", f"You have used today's budget of ${cap:,.2f} for model calls "
                                   f"(${spent_today:,.4f} spent). It renews at midnight UTC.")
        elif session.busy:  # another message got in while the spending was read
            rejection = ("busy", "The team is still answering your previous message: wait for it, or press stop.")
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
    turn_id = turn_id or uuid.uuid4().hex
    tracer = session.chorus.tracer
    async with session._lock:
        if session.tool_context is not None:
            session.tool_context.user_message = typed  # what tools may trust as the user's own words
        events = _run_locked(session, text, started, message_id, spent_today, turn_id)
        trace = None if tracer is None else tracer.begin(
            turn_id=turn_id, user=session.user_id, thread=session.thread_id, team=session.spec.name, text=text)
        done: DoneEvent | None = None
        try:
            async for event in events:
                if trace is not None:
                    trace.note(event)
                if isinstance(event, DoneEvent):
                    done = event
                yield event
        finally:
            await events.aclose()  # a consumer that stops reading must end the team's run too
            if tracer is not None and trace is not None:
                trace.finish(done or DoneEvent(stop_reason="stopped", detail="the reader went away",
                                               turn_id=turn_id), session._last_calls)
                tracer.submit(trace)


async def _spent_today(session: ChatSession) -> float:
    """What the user spent today, when a daily budget is set (0 when unknown: never block on it)."""
    if session.ledger is None or session.chorus.settings.user_daily_cost_budget is None:
        return 0.0
    try:
        return await session.ledger.spent_today(session.user_id)
    except Exception as exc:
        log.error("could not read today's spending of %s: %s", session.user_id, exc)
        return 0.0


@dataclass
class _TurnBudget:
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


async def _run_locked(
    session: ChatSession, text: str, started: float, message_id: str | None, spent_today: float, turn_id: str
) -> AsyncGenerator[TurnEvent, None]:
    await session._prepared()
    earlier = None if message_id is None else await session._state_before(message_id)
    if earlier is not None:
        # An edit: forget this message's turn and every later one, then answer the new text.
        await _restore(session, earlier)
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
    session._usage.clear()
    settings = session.chorus.settings
    daily = settings.user_daily_cost_budget
    session._budget = _TurnBudget(max_tokens=settings.turn_token_budget or None,  # 0 = no cap
                                  max_cost=None if daily is None else daily - spent_today, daily_cap=daily)
    session._last_calls = []
    session._notices.clear()
    session._notices_seen.clear()
    session._stopped = False
    session._cancel = token = CancellationToken()
    totals = _Totals()
    streamed: set[str] = set()
    stop_reason: StopReason = "completed"
    detail = ""
    restore = False
    # The team runs in its own task and hands items over through a queue, so that a
    # cancelled consumer can cancel the team's token *before* waiting for it to wind down
    # (iterating run_stream directly would first wait for the model to finish talking).
    queue: asyncio.Queue[Any] = asyncio.Queue()
    producer = asyncio.create_task(_pump(team, text, token, queue), name=f"chorus-turn-{session.thread_id}")
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            for usage in totals.drain(session._usage):
                yield usage
            for notice in _drain_notices(session):
                yield notice
            if isinstance(item, TaskResult):
                stop_reason, detail = _stop_reason(item, session._stopped)
                continue
            for event in _translate(item, streamed):
                if isinstance(event, MessageEvent):
                    totals.messages += 1
                    totals.agents.append(event.agent)
                yield event
    except GeneratorExit:
        # The consumer stopped reading (closed the generator): end the team's run the same way.
        token.cancel()
        await asyncio.wait([producer], timeout=10)
        await _restore(session, snapshot)
        await _record_cut_off_usage(session, turn_id, totals)  # a stopped turn still cost money
        raise
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # The consumer was cancelled (the page's stop button cancels its task): stop the
            # team's run, rewind it, and let the cancellation go on.
            token.cancel()
            await asyncio.wait([producer], timeout=10)
            await _restore(session, snapshot)
            await _record_cut_off_usage(session, turn_id, totals)
            raise
        # The team's run was cancelled from inside: by our stop(), or by a cancelled model call.
        restore = True
        if not session._stopped:
            stop_reason, detail = "error", "the team's run was cancelled"
            yield ErrorEvent(code="cancelled", message="The team's run was interrupted; your message was kept.")
    except Exception as exc:
        restore = True
        if session._stopped:
            stop_reason, detail = "stopped", "stopped by the user"
        else:
            stop_reason, detail = "error", f"{type(exc).__name__}: {exc}"
            message = str(exc) if isinstance(exc, (ModelError, ChorusError)) else (
                f"The team failed to answer ({type(exc).__name__}: {exc}). Your message was kept; try again."
            )
            where = f"team={session.team_name} user={session.user_id} thread={session.thread_id}"
            if isinstance(exc, ModelError):  # the provider's fault or the configuration's: no traceback
                log.warning("model call failed (%s): %s", where, exc)
            else:
                log.exception("turn failed (%s)", where)
            yield ErrorEvent(code="model_error" if isinstance(exc, ModelError) else "turn_failed", message=message)
    finally:
        session._cancel = None
    budget, session._budget = session._budget, None
    if budget is not None and budget.reason and not session._stopped:
        stop_reason, detail = "budget", budget.reason
        yield NoticeEvent(text=budget.reason, level="warning", code="budget")
    if session._stopped and stop_reason != "stopped":
        stop_reason, detail = "stopped", "stopped by the user"
    if stop_reason not in ("stopped", "error") and totals.messages == 0:
        # Never end silently: a team that ended without a reply is a failure the user must see.
        log.error("team %s ended a turn without any reply (thread=%s): %s", session.team_name, session.thread_id,
                  detail)
        stop_reason, restore = "error", True
        yield ErrorEvent(code="no_answer", message="The team ended without answering; please send that again.")
    if stop_reason == "stopped":
        restore = restore or token.is_cancelled()
    if restore:
        await _restore(session, snapshot)
    for usage in totals.drain(session._usage):
        yield usage
    session._last_calls = totals.records
    await _record_usage(session, turn_id, totals.records)
    for late in _drain_notices(session):
        yield late
    saved = await session._checkpoint(before=None if message_id is None else (message_id, before))
    if saved is not None:
        yield saved
    yield DoneEvent(
        stop_reason=stop_reason,
        detail=detail,
        messages=totals.messages,
        prompt_tokens=totals.prompt_tokens,
        completion_tokens=totals.completion_tokens,
        cost=totals.cost,
        duration_ms=_ms(started),
        agents=totals.agents,
        turn_id=turn_id,
    )


def _drain_notices(session: ChatSession) -> list[NoticeEvent]:
    """What the model clients reported this turn (each text once)."""
    out: list[NoticeEvent] = []
    while session._notices:
        text = session._notices.pop(0)
        if not any(n.text == text for n in out) and text not in session._notices_seen:
            session._notices_seen.add(text)
            out.append(NoticeEvent(text=text, level="warning", code="degraded"))
    return out


async def _record_cut_off_usage(session: ChatSession, turn_id: str, totals: _Totals) -> None:
    """The model calls of a turn that was cut off (stop button, reader gone), into the ledger."""
    totals.drain(session._usage)
    session._last_calls = totals.records
    session._budget = None
    await _record_usage(session, turn_id, totals.records)


async def _record_usage(session: ChatSession, turn_id: str, records: list[CallRecord]) -> None:
    """Write the turn's model calls to the cost ledger; a failure is logged, never the user's problem."""
    if session.ledger is None or not records:
        return
    rows = [UsageRow(user=session.user_id, thread_id=session.thread_id, turn_id=turn_id, team=session.spec.name,
                     agent=r.label, model=r.model, prompt_tokens=r.prompt_tokens,
                     completion_tokens=r.completion_tokens, cost=r.cost, latency_ms=round(r.latency_s * 1000, 3))
            for r in records]
    try:
        await session.ledger.record(rows)
    except Exception as exc:
        log.error("could not record the usage of turn %s (thread %s): %s", turn_id, session.thread_id, exc)


_END = object()


async def _pump(team: Any, text: str, token: CancellationToken, queue: asyncio.Queue[Any]) -> None:
    """Run the team and put every item (or the exception that ended it) on ``queue``, then _END."""
    try:
        async for item in team.run_stream(task=TextMessage(content=text, source=USER), cancellation_token=token):
            queue.put_nowait(item)
    except BaseException as exc:  # handed to the consumer, who decides what it means
        queue.put_nowait(exc)
    finally:
        queue.put_nowait(_END)


async def _restore(session: ChatSession, snapshot: Mapping[str, Any] | Saved) -> bool:
    """Rewind the conversation to ``snapshot`` after a stop, an error or an edit.

    The team is rebuilt rather than reset: a cancelled run can leave AutoGen's
    runtime with a miscounted message queue, after which the next run stops
    before the manager has seen the agent's reply (every other turn came back
    empty). A fresh team with the saved state has no such history.
    """
    state = snapshot.state if isinstance(snapshot, Saved) else snapshot
    try:
        session.build()
        await session._put(state)
        session._state = state
        if isinstance(snapshot, Saved) and snapshot.seq is not None:
            session._saved = snapshot  # the next save writes what changed since this one
    except Exception:
        log.exception("could not rewind the team after an interrupted turn (thread=%s)", session.thread_id)
        session._rewind_failed = True  # keep the last good checkpoint rather than overwrite it
        return False
    return True


def _translate(item: Any, streamed: set[str]) -> list[TurnEvent]:
    """AutoGen's stream items -> Chorus events (unknown kinds are ignored)."""
    if isinstance(item, ModelClientStreamingChunkEvent):
        if item.full_message_id:
            streamed.add(item.full_message_id)
        return [TokenEvent(agent=item.source, text=item.content, message_id=item.full_message_id)]
    if isinstance(item, SelectSpeakerEvent):
        return [SelectionEvent(agents=list(item.content))]
    if isinstance(item, ToolCallRequestEvent):
        return [
            ToolCallEvent(agent=item.source, call_id=c.id, name=c.name, arguments=c.arguments) for c in item.content
        ]
    if isinstance(item, ToolCallExecutionEvent):
        return [
            ToolResultEvent(agent=item.source, call_id=r.call_id, name=r.name, result=r.content,
                            is_error=bool(r.is_error))
            for r in item.content
        ]
    if isinstance(item, MemoryQueryEvent):
        return [RetrievalEvent(agent=item.source, kind="memory", items=[str(m.content) for m in item.content])]
    if isinstance(item, HandoffMessage):
        return [HandoffEvent(agent=item.source, target=item.target, content=item.content)]
    if isinstance(item, BaseChatMessage) and item.source != USER:
        return [MessageEvent(agent=item.source, content=item.to_text(), message_id=item.id,
                             streamed=item.id in streamed)]
    return []


@dataclass
class _Totals:
    messages: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0
    agents: list[str] = field(default_factory=list)
    records: list[CallRecord] = field(default_factory=list)

    def drain(self, records: list[CallRecord]) -> list[UsageEvent]:
        events = []
        while records:
            r = records.pop(0)
            self.records.append(r)
            self.prompt_tokens += r.prompt_tokens
            self.completion_tokens += r.completion_tokens
            self.cost = None if self.cost is None or r.cost is None else self.cost + r.cost
            events.append(UsageEvent(agent=r.label, model=r.model, prompt_tokens=r.prompt_tokens,
                                     completion_tokens=r.completion_tokens, cost=r.cost,
                                     latency_ms=round(r.latency_s * 1000, 3)))
        return events


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def ask(chorus: Chorus, text: str, *, team: str | None = None, user_id: str = "local") -> list[TurnEvent]:
    """One turn in a fresh session, all events collected (for scripts and tests)."""
    session = chorus.open_session(team, user_id=user_id)
    return [event async for event in run_turn(session, text)]


__all__ = ["USER", "ChatSession", "Chorus", "ChorusError", "ask", "clean_text", "run_turn"]
