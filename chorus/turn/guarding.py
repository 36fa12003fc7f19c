"""A turn's guards (:mod:`chorus.plugins._guards`): the user's message checked before the team
sees it, tool results before the model reads them (through :data:`current_guards`), and replies
and shown tool results before anyone sees them (:func:`checked`, called by the runner)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chorus.events import MessageEvent, ToolResultEvent, TurnEvent
from chorus.plugins._guards import GuardCheck, GuardOutcome, TurnGuards, apply_guards
from chorus.turn.translate import USER

if TYPE_CHECKING:
    from chorus.turn.session import ChatSession
    from chorus.turn.state import Turn

WITHHELD = "⚠️ This reply was withheld by a safety check: {reason}."


def base_check(session: ChatSession) -> GuardCheck:
    return GuardCheck(stage="message", user_id=session.user_id, thread_id=session.thread_id, team=session.spec.name)


def has(session: ChatSession, kind: str) -> bool:
    return any(h.kind == kind for h in session.chorus.registry.guards)


async def check_message(session: ChatSession, text: str) -> GuardOutcome:
    """The user's message as the input guards let the team see it (or why it is blocked)."""
    return await apply_guards(session.chorus.registry.guards, "input", text, base_check(session),
                              session.chorus.settings)


def tool_guards(session: ChatSession) -> TurnGuards | None:
    """What the running turn's tools consult (None when no input guard is on)."""
    if not has(session, "input"):
        return None
    return TurnGuards(session.chorus.registry.guards, session.chorus.settings, base_check(session))


async def checked(turn: Turn, event: TurnEvent) -> TurnEvent:
    """``event`` as the output guards let it be seen: an agent's reply whole (the runner holds back
    its streamed pieces, so a blocked reply is never shown in part), a tool's result as shown."""
    session = turn.session
    hooks, settings = session.chorus.registry.guards, session.chorus.settings
    base = base_check(session)
    if isinstance(event, MessageEvent) and event.agent != USER:
        prompts = {m.name: m.system_message for m in (session.built.members if session.built else [])}
        check = replace(base, stage="reply", agent=event.agent, system_message=prompts.get(event.agent),
                        team_instructions=tuple(prompts.values()))
        outcome = await apply_guards(hooks, "output", event.content, check, settings)
        content = outcome.text if outcome.blocked is None else WITHHELD.format(reason=outcome.blocked)
        if content != event.content and event.content.strip():
            turn.rewrites[event.content] = content
        return replace(event, content=content, streamed=False)
    if isinstance(event, ToolResultEvent):
        check = replace(base, stage="tool_result", agent=event.agent, tool=event.name)
        outcome = await apply_guards(hooks, "output", event.result, check, settings)
        return replace(event, result=outcome.text if outcome.blocked is None else f"[withheld: {outcome.blocked}]")
    return event


def rewritten(value: Any, rewrites: Mapping[str, str]) -> Any:
    """``value`` (a team's saved state) with every text the guards changed replaced by what was shown."""
    if isinstance(value, str):
        for original, shown in rewrites.items():
            if original in value:
                value = value.replace(original, shown)
        return value
    if isinstance(value, Mapping):
        return {k: rewritten(v, rewrites) for k, v in value.items()}
    if isinstance(value, list):
        return [rewritten(v, rewrites) for v in value]
    return value


async def rewrite_memory(session: ChatSession, rewrites: Mapping[str, str]) -> None:
    """The team remembers its guarded replies as shown, not as the model wrote them: what it saves
    (the conversation's checkpoint) and what later turns see hold no text a guard removed."""
    team = session.built.team if session.built is not None else None
    if team is None or not rewrites:
        return
    try:  # through the session's TeamStates, so the next save still writes only what changed
        state = rewritten(await session._states.save(team), rewrites)
        await team.load_state(state)
        await session._states.loaded(team, state)
    except Exception:  # the turn's answer stands; the team keeps the text as the model wrote it
        import logging

        logging.getLogger(__name__).exception("could not give thread %s's team its guarded replies",
                                              session.thread_id)
