"""``type: swarm``: members hand the conversation to each other (AutoGen's Swarm and handoffs).

The first member takes the first message. Each member is given one tool per member it may hand
over to (``transfer_to_<name>``, with a ``reason``); calling it passes the conversation, and
the page shows the handoff as a step ("guide → assistant: asks for the time"). The turn ends
when a member answers instead of handing over. The next message goes to whoever answered last,
who hands it on if another member fits it better. Who may hand over to whom is the team file's
``handoffs`` (member: [targets]); without it every member may hand over to every other. Members
that only hand the conversation back and forth are stopped at ``max_messages``, with a notice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autogen_agentchat.base import Handoff, Team, TerminationCondition
from autogen_agentchat.messages import BaseChatMessage, HandoffMessage
from autogen_agentchat.teams import Swarm as AutoGenSwarm
from autogen_core.tools import BaseTool, FunctionTool

from chorus.models import HANDOFF_PREFIX
from chorus.teams.graph import agents_of
from chorus.teams.kind import BaseTeamType, StopOnMessage, TeamParts
from chorus.teams.spec import TeamFieldError, TeamSpec

ANSWERED = "Answered by "
"""How the turn's stop reason starts when a member answered (the runner reports it as completed)."""


class ReasonedHandoff(Handoff):
    """A handoff whose tool takes the reason, which the receiver and the user are shown."""

    @property
    def handoff_tool(self) -> BaseTool[Any, Any]:
        target = self.target

        def handoff(reason: str) -> str:
            return reason.strip() or f"Handing the conversation to {target}."

        return FunctionTool(handoff, name=self.name, strict=True,
                            description=f"Hand the conversation to {target} when {target} fits the user's "
                                        f"request better; say why in a few words. {self.description}".strip())


def handoffs_for(spec: TeamSpec, member: str, members: Sequence[str]) -> list[Handoff]:
    """The handoffs ``member`` is given: the team file's targets (else every other member), among ``members``."""
    targets = spec.handoffs.get(member) if spec.handoffs else [m for m in members if m != member]
    return [ReasonedHandoff(target=t, name=f"{HANDOFF_PREFIX}{t}".lower(), description="")
            for t in targets or [] if t in members and t != member]


class Answered(StopOnMessage):
    """Ends the run when a member answers (a message that is not a handoff)."""

    source = "Answered"

    def __init__(self, members: Sequence[str]) -> None:
        super().__init__()
        self.members = set(members)

    def stop_for(self, message: BaseChatMessage) -> str | None:
        if not isinstance(message, HandoffMessage) and message.source in self.members:
            return f"{ANSWERED}{message.source}"
        return None


class Swarm(BaseTeamType):
    name = "swarm"

    def default_max_messages(self, spec: TeamSpec) -> int:
        return 1 + 2 * len(spec.members)  # the user's message, then each member at most twice

    def check(self, spec: TeamSpec) -> None:
        if "*" in spec.members or len(set(spec.members)) != len(spec.members):
            raise TeamFieldError("members", f"team {spec.name!r}: a swarm team names each member once, the one "
                                            "that takes the first message first ('*' is not allowed)")
        for member, targets in spec.handoffs.items():
            if member not in spec.members:
                raise TeamFieldError("handoffs", f"team {spec.name!r}: handoffs of {member!r}, which is not a "
                                                 "member of the team")
            outside = [t for t in targets if t not in spec.members]
            if outside:
                raise TeamFieldError("handoffs", f"team {spec.name!r}: {member!r} hands over to "
                                                 f"{', '.join(map(repr, outside))}, not members of the team")
            if member in targets:
                raise TeamFieldError("handoffs", f"team {spec.name!r}: {member!r} cannot hand over to itself")
        if spec.handoffs and not spec.handoffs.get(spec.members[0]) and len(spec.members) > 1:
            raise TeamFieldError("handoffs", f"team {spec.name!r}: the first member, {spec.members[0]!r}, takes "
                                             "every first message and must be able to hand over")
        if spec.handoffs.keys() and len(spec.members) > 1:
            reachable = {spec.members[0]}
            for targets in spec.handoffs.values():
                reachable.update(targets)
            unreachable = [m for m in spec.members if m not in reachable]
            if unreachable:
                raise TeamFieldError("handoffs", f"team {spec.name!r}: no member hands over to "
                                                 f"{', '.join(map(repr, unreachable))}")

    def handoffs(self, spec: TeamSpec, member: str, members: Sequence[str]) -> list[Handoff]:
        return handoffs_for(spec, member, members)

    def termination(self, spec: TeamSpec) -> TerminationCondition | None:
        return Answered(spec.members)

    def stop_notice(self, spec: TeamSpec, stop_reason: str) -> str | None:
        if stop_reason != "max_messages":
            return None
        return ("The team's members kept handing the conversation to each other without answering; the turn "
                "stopped at the team's message cap (max_messages). Try asking one of them by name.")

    def build(self, parts: TeamParts) -> Team:
        return AutoGenSwarm(agents_of(parts, "swarm"), termination_condition=parts.termination,
                            emit_team_events=True)
