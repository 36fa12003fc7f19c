"""AutoGen teams that start every run (every user message) from their first step.

AutoGen's round robin remembers whose turn is next across runs, and GraphFlow remembers where in
the graph it was when a run ended before the graph did (``max_messages``, a budget, a closing
word). For Chorus's workflow types each message is a new request: an iterative team starts with
its producer, a pipeline or a graph with its first step. The managers below start over when a
run begins (AutoGen calls ``validate_group_state`` with each run's first messages); the team
classes make their managers of these classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autogen_agentchat.messages import BaseChatMessage
from autogen_agentchat.teams import GraphFlow, RoundRobinGroupChat
from autogen_agentchat.teams._group_chat._graph._digraph_group_chat import GraphFlowManager
from autogen_agentchat.teams._group_chat._round_robin_group_chat import RoundRobinGroupChatManager


class _RoundRobinManager(RoundRobinGroupChatManager):
    async def validate_group_state(self, messages: list[BaseChatMessage] | None) -> None:
        await super().validate_group_state(messages)
        self._next_speaker_index = 0


class _GraphManager(GraphFlowManager):
    _chorus_team: Any = None

    async def validate_group_state(self, messages: list[BaseChatMessage] | None) -> None:
        await super().validate_group_state(messages)
        self._reset_execution_state()
        team = self._chorus_team
        if team is not None and getattr(team, "continuing", False):
            # The run's messages replay the steps already done: the last one's edges pick who is next.
            team.continuing = False
            self._ready.clear()


def _made_as(make: Callable[[], Any], cls: type, team: Any = None) -> Callable[[], Any]:
    def factory() -> Any:
        manager = make()
        manager.__class__ = cls  # the same object and fields, with validate_group_state of ours
        manager._chorus_team = team
        return manager
    return factory


class RoundRobinFromTheStart(RoundRobinGroupChat):
    """A round robin whose every run starts with its first participant."""

    def _create_group_chat_manager_factory(self, *args: Any, **kwargs: Any) -> Any:
        return _made_as(super()._create_group_chat_manager_factory(*args, **kwargs), _RoundRobinManager)


class GraphFlowFromTheStart(GraphFlow):
    """A GraphFlow whose every run starts at the graph's start."""

    def _create_group_chat_manager_factory(self, *args: Any, **kwargs: Any) -> Any:
        return _made_as(super()._create_group_chat_manager_factory(*args, **kwargs), _GraphManager, self)


class Pipeline(GraphFlowFromTheStart):
    """A chain that can also go on from where an interrupted run stopped: set ``continuing`` and
    run it with the user's message and the finished steps' messages as the task; the member after
    the last of them speaks next (:mod:`chorus.turn.pipeline`)."""

    continuing = False
