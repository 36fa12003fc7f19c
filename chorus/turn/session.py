"""One conversation with one team (:class:`ChatSession`): the built AutoGen team, which remembers
earlier turns; its saved states (resume after a restart, rewind on an edit or a stop); what its
tools keep (:mod:`chorus.store.tool_state`); and the turn running now, if any.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autogen_core.memory import Memory

from chorus.approvals import Approvals
from chorus.events import CallRecord, NoticeEvent
from chorus.models import OFFLINE_NOTICE, validate_model
from chorus.plugins._specs import ToolContext
from chorus.settings import OFFLINE_MODEL
from chorus.store import tool_state
from chorus.store.checkpoints import CheckpointStore, Saved
from chorus.store.personal_keys import PersonalKey
from chorus.store.team_states import TeamStates
from chorus.store.usage import UsageLedger
from chorus.teams import BuiltTeam, TeamSpec, build_team
from chorus.turn import pipeline
from chorus.turn.errors import MEMORY_NOTICE, PROBLEMS_NOTICE, ChorusError

if TYPE_CHECKING:
    from chorus.turn.container import Chorus
    from chorus.turn.state import Turn

log = logging.getLogger(__name__)


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
    ledger: UsageLedger | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
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
    interrupted: pipeline.Interrupted | None = None
    """A pipeline's turn that a restart cut short, restored with the conversation (its finished
    steps); a "continue" goes on from the next step (:mod:`chorus.turn.pipeline`)."""
    turn: Turn | None = None
    """The turn running now, if any (:class:`chorus.turn.state.Turn`): the model clients and the stop
    button reach it through the session."""
    personal: PersonalKey | None = None
    """The user's own provider key and model, when they gave one: every call of this conversation
    uses it (:meth:`use_key` changes it between turns)."""
    approvals: Approvals | None = None
    """How this conversation asks its user before a tool that needs approval runs (the page and
    background runs set it; without it such a call is refused, with a reason the agent tells)."""

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
            tool_context=self.tool_context, memories=memories, on_notice=self._on_notice,
            on_failure=self._on_failure,
            other_teams=list(self.chorus.catalog.teams.values()), mcp=self.chorus.mcp,
            personal=(self.personal.model, self.personal.key) if self.personal is not None else None,
        )
        for model in sorted(self.built.models):
            error = validate_model(model)
            if error:
                raise ChorusError(error)

    async def use_key(self, personal: PersonalKey | None) -> None:
        """Call with the user's own key (None: the deployment's again) from the next turn on, once a
        running turn has ended; the team keeps what it remembers. ChorusError when the key's model
        cannot be used."""
        async with self._lock:  # waits for a running turn; no turn starts while the team is rebuilt
            await self._prepared()
            state = await self._save() if self.built is not None else None
            previous, self.personal = self.personal, personal
            try:
                self.build()
            except ChorusError:
                self.personal = previous
                self.build()
                raise
            finally:
                if state is not None:
                    await self._put(state)

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
        """Every finished model call: the running turn's, checked against its budgets."""
        turn = self.turn
        if turn is not None and turn.on_call(record) and self.built is not None:
            self.built.stop.set()  # graceful: the team stops at the end of the current reply

    def _on_failure(self, agent: str, exc: BaseException) -> None:
        """A model call that failed: the running turn keeps the first, to name the agent to the user."""
        if self.turn is not None and self.turn.failure is None:
            self.turn.failure = (agent, exc)

    def _on_notice(self, text: str) -> None:
        """A model client's notice (a degraded answer), for the running turn to show."""
        if self.turn is not None:
            self.turn.on_notice(text)

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
        state, interrupted = pipeline.split(state)
        names = [m.name for m in self.built.members]
        # (a pipeline whose every step finished, or whose next member left the team, has nothing to go on with)
        self.interrupted = interrupted if interrupted is not None and interrupted.next_member(names) else None
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

    async def _forget_steps(self, before_turn: Mapping[str, Any]) -> None:
        """The user stopped a pipeline: its finished steps are not offered to continue (the state
        before the turn is saved again, without them)."""
        self.interrupted = None
        if self.checkpoints is None:
            return
        try:
            self._saved, _ = await self.checkpoints.save(
                self.thread_id, self.user_id, self.spec.name, pipeline.split(before_turn)[0], parent=self._saved)
        except Exception as exc:
            log.error("could not checkpoint thread %s: %s", self.thread_id, exc)

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

    async def _checkpoint_step(self, before_turn: Mapping[str, Any], steps: pipeline.Interrupted) -> None:
        """Save a pipeline's finished steps in the middle of its turn: the state before the turn,
        plus the steps (a restart then resumes with them kept). A store that fails is logged."""
        if self.checkpoints is None:
            return
        try:
            self._saved, _ = await self.checkpoints.save(
                self.thread_id, self.user_id, self.spec.name, pipeline.with_steps(before_turn, steps),
                parent=self._saved)
        except Exception as exc:
            log.error("could not checkpoint a step of thread %s: %s", self.thread_id, exc)

    def stop(self, *, keep_progress: bool = False) -> None:
        """Stop the running turn now (the stop button). Safe to call when idle. ``keep_progress``:
        the server is stopping, not the user: a pipeline keeps its finished steps for after the restart."""
        turn = self.turn
        if not self.busy or turn is None:
            return
        turn.stopped = True
        turn.keep_progress = turn.keep_progress or keep_progress
        if self.built is not None:
            self.built.stop.set()
        turn.cancel.cancel()

    async def restore(self, snapshot: Mapping[str, Any] | Saved) -> bool:
        """Rewind the conversation to ``snapshot`` after a stop, an error or an edit.

        The team is rebuilt rather than reset: a cancelled run can leave AutoGen's
        runtime with a miscounted message queue, after which the next run stops
        before the manager has seen the agent's reply (every other turn came back
        empty). A fresh team with the saved state has no such history.
        """
        state = snapshot.state if isinstance(snapshot, Saved) else snapshot
        try:
            self.build()
            await self._put(state)
            self._state = state
            if isinstance(snapshot, Saved) and snapshot.seq is not None:
                self._saved = snapshot  # the next save writes what changed since this one
        except Exception:
            log.exception("could not rewind the team after an interrupted turn (thread=%s)", self.thread_id)
            self._rewind_failed = True  # keep the last good checkpoint rather than overwrite it
            return False
        return True
