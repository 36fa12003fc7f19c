"""What a team type is: given a team's built members, it makes the AutoGen team that runs them.

One module per type (:mod:`chorus.teams.selector`, :mod:`chorus.teams.round_robin`,
:mod:`chorus.teams.sequential`, :mod:`chorus.teams.iterative`,
:mod:`chorus.teams.swarm`, :mod:`chorus.teams.graph`), listed in
:mod:`chorus.teams.registry`: a new way for members to take turns is one new module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autogen_agentchat.base import ChatAgent, Handoff, Team, TerminationCondition
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, StopMessage

from chorus.models import ChorusModelClient
from chorus.settings import Settings
from chorus.teams.spec import TeamSpec

ClientMaker = Callable[[str, str, str], ChorusModelClient]
"""``make_client(model, label, role)``: a model client for one of the team's own roles (its
selector, say), with the same settings, hints and callbacks as its members'."""


@dataclass
class TeamParts:
    """What a team type is given to make the AutoGen team."""

    spec: TeamSpec
    agents: list[ChatAgent | Team]
    """The members that were built, in the team's order (at least one)."""
    termination: TerminationCondition
    """When a turn ends (the team's own conditions, the stop button, the budget)."""
    settings: Settings
    make_client: ClientMaker
    clients: dict[str, ChorusModelClient] = field(default_factory=dict)
    """The members' model clients by name; a type adds the clients of its own roles."""


class TeamType(Protocol):
    """One way for a team's members to take turns (``type:`` in a team file)."""

    name: str

    def default_max_messages(self, spec: TeamSpec) -> int:
        """Messages in a turn (the user's included) when the team file sets no ``max_messages``."""
        ...

    def check(self, spec: TeamSpec) -> None:
        """Refuse a team file this type cannot run: raise :class:`~chorus.teams.spec.TeamFieldError`
        naming the field, so that the message points at its line. Called when teams are loaded."""
        ...

    def member_role(self, spec: TeamSpec, member: str) -> str:
        """The role a member's model client is told (``"agent"``; ``"reviewer"`` in an iterative team)."""
        ...

    def member_instructions(self, spec: TeamSpec, member: str) -> str:
        """What the type adds to a member's system message (a reviewer: how to approve), or ``""``."""
        ...

    def handoffs(self, spec: TeamSpec, member: str, members: Sequence[str]) -> list[Handoff]:
        """The AutoGen handoffs ``member`` is built with (a swarm's), among the built ``members``; or ``[]``."""
        ...

    def steps(self, spec: TeamSpec) -> int | None:
        """How many steps one pass of the team takes, for the page's "step 3 of 5: coder" while it
        runs (a pipeline's members); None for a type without steps."""
        ...

    def termination(self, spec: TeamSpec) -> TerminationCondition | None:
        """A condition of the type's own that ends a turn too (an approval), or None."""
        ...

    def stop_notice(self, spec: TeamSpec, stop_reason: str) -> str | None:
        """What the user is told when a turn ended this way (``"max_messages"``...), or None."""
        ...

    def build(self, parts: TeamParts) -> Team:
        """The AutoGen team that runs ``parts.agents``."""
        ...


class BaseTeamType:
    """Defaults for every method of :class:`TeamType` but ``name`` and ``build``."""

    name = ""

    def default_max_messages(self, spec: TeamSpec) -> int:
        return 2

    def check(self, spec: TeamSpec) -> None:
        return None

    def member_role(self, spec: TeamSpec, member: str) -> str:
        return "agent"

    def member_instructions(self, spec: TeamSpec, member: str) -> str:
        return ""

    def handoffs(self, spec: TeamSpec, member: str, members: Sequence[str]) -> list[Handoff]:
        return []

    def steps(self, spec: TeamSpec) -> int | None:
        return None

    def termination(self, spec: TeamSpec) -> TerminationCondition | None:
        return None

    def stop_notice(self, spec: TeamSpec, stop_reason: str) -> str | None:
        return None


class StopOnMessage(TerminationCondition):
    """A termination that ends the run at the first message :meth:`stop_for` names a reason for
    (the reason becomes the stop message), once until it is reset. Team types' own conditions
    (an iterative team's approval, a swarm's answer) say only which message ends the run."""

    source = "StopOnMessage"

    def __init__(self) -> None:
        self._terminated = False

    def stop_for(self, message: BaseChatMessage) -> str | None:
        raise NotImplementedError

    @property
    def terminated(self) -> bool:
        return self._terminated

    async def __call__(self, messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> StopMessage | None:
        if self._terminated:
            return None
        for message in messages:
            reason = self.stop_for(message) if isinstance(message, BaseChatMessage) else None
            if reason is not None:
                self._terminated = True
                return StopMessage(content=reason, source=self.source)
        return None

    async def reset(self) -> None:
        self._terminated = False
