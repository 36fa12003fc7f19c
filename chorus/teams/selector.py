"""``type: selector``: a selector (a model, the team's supervisor) picks who answers each message.

The selector sees the members' descriptions, the team's ``routing`` guidance and the conversation;
Chorus's prompt asks it for one name. A team with one member needs no selector: it runs as a
round robin of one.
"""

from __future__ import annotations

from autogen_agentchat.base import Team
from autogen_agentchat.teams import SelectorGroupChat

from chorus.models.offline import SELECTOR_INSTRUCTIONS
from chorus.teams.kind import BaseTeamType, TeamParts
from chorus.teams.round_robin import RoundRobin
from chorus.teams.spec import TeamSpec

SELECTOR_PROMPT = """You choose which member of a team answers next in a chat with a user.

Team members:
{roles}

Conversation so far:
{history}

""" + SELECTOR_INSTRUCTIONS + """ the one member best suited to answer the user's latest message.
Reply with the member's name only, one of: {participants}"""


def selector_prompt(spec: TeamSpec) -> str:
    """Chorus's selector prompt, with the team's ``routing`` guidance when it has some.

    The guidance goes before the transcript: the offline model reads the user's latest
    message from the end of the transcript, up to the instructions that follow it.
    """
    if not spec.routing.strip():
        return SELECTOR_PROMPT
    guidance = spec.routing.strip().replace("{", "{{").replace("}", "}}")
    head, rest = SELECTOR_PROMPT.split("\n\n", 1)
    return f"{head}\n\nHow this team routes:\n{guidance}\n\n{rest}"


class Selector(BaseTeamType):
    name = "selector"

    def default_max_messages(self, spec: TeamSpec) -> int:
        return 2  # the user's message and one answer

    def build(self, parts: TeamParts) -> Team:
        spec = parts.spec
        if len(parts.agents) < 2:
            return RoundRobin().build(parts)
        selector = parts.make_client(spec.model or parts.settings.model, "selector", "selector")
        parts.clients["selector"] = selector
        return SelectorGroupChat(
            parts.agents,
            model_client=selector,
            termination_condition=parts.termination,
            selector_prompt=selector_prompt(spec),
            allow_repeated_speaker=spec.allow_repeated_speaker,
            emit_team_events=True,
        )
