"""The team's state as AutoGen's ``team.save_state()`` gives it, dumping only what is new.

AutoGen dumps every message of the history (three times over: the group chat's thread and each
agent's model context) on every ``save_state``. :class:`TeamStates` keeps each list's dumps and
hands AutoGen only the messages it has not dumped yet, so a turn's save costs its own messages,
not the conversation's. :mod:`chorus.store.checkpoints` then writes only what changed.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autogen_agentchat.base import Team

log = logging.getLogger(__name__)


@dataclass
class _Dumped:
    owner: Any  # the object whose list this is (a model context, a group chat manager)
    messages: list[Any] = field(default_factory=list)  # the list's messages when last dumped...
    dumps: list[Any] = field(default_factory=list)  # ...and their dumps, in the same order

    def kept(self, current: list[Any]) -> int:
        """How many of ``current``'s first messages are the ones dumped (the same objects)."""
        if len(current) >= len(self.messages) and all(map(operator.is_, self.messages, current)):
            return len(self.messages)  # the usual case (the list only grew), at C speed
        kept = 0
        for message, now in zip(self.messages, current, strict=False):
            if message is not now:
                break
            kept += 1
        return kept


@dataclass
class _Target:
    key: str
    owner: Any
    attr: str
    path: tuple[str, ...]  # where the list's dump sits in the team's state


@dataclass
class TeamStates:
    """``team.save_state()``, dumping only what is new since the previous call.

    AutoGen dumps every message of the history on every ``save_state``. The messages of the
    group chat's thread and of each AssistantAgent's model context are kept here with their
    dumps; a call hands AutoGen only the messages it has not dumped yet (by object identity),
    then puts the earlier dumps back in front. Everything else in the state is AutoGen's own
    output. Teams or agents of other kinds are saved by AutoGen as they are.

    The states returned share those dumps: treat them as read-only.
    """

    _lists: dict[str, _Dumped] = field(default_factory=dict)

    async def save(self, team: Team) -> Mapping[str, Any]:
        targets = await _targets(team)
        swapped: list[tuple[_Target, list[Any], _Dumped, int]] = []
        try:
            for target in targets:
                current = getattr(target.owner, target.attr)
                dumped = self._lists.get(target.key)
                if dumped is None or dumped.owner is not target.owner:
                    dumped = _Dumped(target.owner)
                kept = dumped.kept(current)
                swapped.append((target, current, dumped, kept))
                setattr(target.owner, target.attr, current[kept:])
            state = await team.save_state()
        finally:
            for target, current, _, _ in swapped:
                setattr(target.owner, target.attr, current)
        for target, current, dumped, kept in swapped:
            place = _at(state, target.path[:-1])
            tail = None if place is None else place.get(target.path[-1])
            if not isinstance(tail, list) or len(tail) != len(current) - kept:
                log.warning("the team's state is not laid out as expected (%s): saving it whole", target.key)
                self._lists.clear()
                return await team.save_state()
            dumped.messages = current[:]  # a copy: the team appends to ``current``
            dumped.dumps = dumped.dumps[:kept] + tail
            place[target.path[-1]] = dumped.dumps[:]
            self._lists[target.key] = dumped
        return state

    async def loaded(self, team: Team, state: Mapping[str, Any]) -> None:
        """``team`` was just loaded from ``state``: its messages' dumps are ``state``'s."""
        try:
            targets = await _targets(team)
        except Exception:  # only a shortcut: the next save dumps everything
            return
        for target in targets:
            current = getattr(target.owner, target.attr)
            place = _at(state, target.path[:-1])
            saved = None if place is None else place.get(target.path[-1])
            if isinstance(saved, list) and len(saved) == len(current):
                self._lists[target.key] = _Dumped(target.owner, current[:], list(saved))


def _at(state: Any, path: Sequence[str]) -> Any:
    for step in path:
        if not isinstance(state, Mapping):
            return None
        state = state.get(step)
    return state if isinstance(state, dict) else None


async def _targets(team: Team) -> list[_Target]:
    """The message lists of ``team`` whose dumps TeamStates can keep (none for teams it does
    not know: AutoGen then dumps them whole, as ever)."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.teams import BaseGroupChat
    from autogen_agentchat.teams._group_chat._chat_agent_container import ChatAgentContainer
    from autogen_agentchat.teams._group_chat._round_robin_group_chat import RoundRobinGroupChatManager
    from autogen_agentchat.teams._group_chat._selector_group_chat import SelectorGroupChatManager
    from autogen_agentchat.teams._group_chat._swarm_group_chat import SwarmGroupChatManager
    from autogen_core import AgentId, SingleThreadedAgentRuntime
    from autogen_core.model_context import ChatCompletionContext

    runtime = getattr(team, "_runtime", None)
    if not isinstance(team, BaseGroupChat) or not isinstance(runtime, SingleThreadedAgentRuntime):
        return []
    if not getattr(team, "_initialized", False) or getattr(team, "_is_running", True):
        return []
    targets: list[_Target] = []
    team_id = team._team_id
    for name, topic in zip(team._participant_names, team._participant_topic_types, strict=True):
        container: Any = await runtime.try_get_underlying_agent_instance(AgentId(type=topic, key=team_id))
        agent = getattr(container, "_agent", None)
        context = getattr(agent, "_model_context", None)
        if (type(container).save_state is ChatAgentContainer.save_state
                and isinstance(agent, AssistantAgent) and type(agent).save_state is AssistantAgent.save_state
                and isinstance(context, ChatCompletionContext)
                and type(context).save_state is ChatCompletionContext.save_state
                and isinstance(getattr(context, "_messages", None), list)):
            targets.append(_Target(f"agent:{name}", context, "_messages",
                                   ("agent_states", name, "agent_state", "llm_context", "messages")))
    manager: Any = await runtime.try_get_underlying_agent_instance(
        AgentId(type=team._group_chat_manager_topic_type, key=team_id))
    known = (RoundRobinGroupChatManager.save_state, SelectorGroupChatManager.save_state,
             SwarmGroupChatManager.save_state)
    if type(manager).save_state in known and isinstance(getattr(manager, "_message_thread", None), list):
        targets.append(_Target("manager", manager, "_message_thread",
                               ("agent_states", team._group_chat_manager_name, "message_thread")))
    return targets
