"""``type: iterative``: a producer drafts, reviewers review, until one approves.

The first member is the producer, the others (one or more) the reviewers; they speak in that order,
round after round, and the user sees every draft and every review; every message starts with
the producer. A reviewer approves by starting
its reply with the team's ``approval`` phrase (``APPROVED`` unless the team file says otherwise);
the turn then ends. After ``max_iterations`` rounds without an approval the turn ends too, the last
draft stands and the user is told so. Each reviewer's model client is told its role
(``"reviewer"``), so the offline model reviews instead of answering, and each reviewer's system
message ends with how to approve (with the team's phrase), so a real model knows it too.
"""

from __future__ import annotations

from collections.abc import Sequence

from autogen_agentchat.base import Team, TerminationCondition
from autogen_agentchat.messages import BaseChatMessage

from chorus.teams._from_the_start import RoundRobinFromTheStart
from chorus.teams.kind import BaseTeamType, StopOnMessage, TeamParts
from chorus.teams.spec import TeamFieldError, TeamSpec

APPROVED_BY = "Approved by "
"""How the turn's stop reason starts when a reviewer approved (the runner reports it as completed)."""


def approves(text: str, phrase: str) -> bool:
    """Whether a review approves: its first words are the approval phrase (any case, any markup)."""
    start = text.lstrip(" \t\n*_#>`\"'").casefold()
    return start.startswith(phrase.casefold())


class Approval(StopOnMessage):
    """Ends the run when a reviewer's message approves the draft."""

    source = "Approval"

    def __init__(self, reviewers: Sequence[str], phrase: str) -> None:
        super().__init__()
        self.reviewers = set(reviewers)
        self.phrase = phrase

    def stop_for(self, message: BaseChatMessage) -> str | None:
        if message.source in self.reviewers and approves(message.to_model_text(), self.phrase):
            return f"{APPROVED_BY}{message.source}"
        return None


class Iterative(BaseTeamType):
    name = "iterative"

    def default_max_messages(self, spec: TeamSpec) -> int:
        return 1 + spec.max_iterations * len(spec.members)  # the user's message, then every round

    def check(self, spec: TeamSpec) -> None:
        if "*" in spec.members or len(spec.members) < 2:
            raise TeamFieldError("members", f"team {spec.name!r}: an iterative team names its producer, then "
                                            "one or more reviewers ('*' is not allowed)")
        if len(set(spec.members)) != len(spec.members):
            raise TeamFieldError("members", f"team {spec.name!r}: an iterative team lists each member once")

    def member_role(self, spec: TeamSpec, member: str) -> str:
        return "reviewer" if member in spec.members[1:] else "agent"

    def member_instructions(self, spec: TeamSpec, member: str) -> str:
        if member not in spec.members[1:]:
            return ""
        return (f"You review the latest draft by {spec.members[0]}. If it is good enough to give the user, start "
                f"your reply with {spec.approval} and say why in a sentence. Otherwise do not write "
                f"{spec.approval}: say exactly what to change.")

    def termination(self, spec: TeamSpec) -> TerminationCondition | None:
        return Approval(spec.members[1:], spec.approval)

    def stop_notice(self, spec: TeamSpec, stop_reason: str) -> str | None:
        if stop_reason != "max_messages" or spec.termination.max_messages is not None:
            return None  # (a team file's own max_messages is a cap of its own)
        rounds = spec.max_iterations
        return (f"No reviewer approved the draft within {rounds} round{'s' if rounds != 1 else ''} "
                "(the team's max_iterations): the last draft stands.")

    def build(self, parts: TeamParts) -> Team:
        # Every message starts with the producer (AutoGen's round robin would go on from whoever is next).
        return RoundRobinFromTheStart(parts.agents, termination_condition=parts.termination, emit_team_events=True)
