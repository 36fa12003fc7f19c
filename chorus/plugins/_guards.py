"""Guardrails: what a guard sees (:class:`GuardCheck`), what it decides (:class:`Verdict`), and how
a turn applies every guard in order (:func:`apply_guards`).

Guards are the ``chorus_check_input`` and ``chorus_check_output`` hooks of plugins, and Chorus's
built-in guards (``CHORUS_GUARDS``). Input checks see what goes into the models: the user's
message (stage ``message``) and each tool's result before the model reads it (``tool_result``).
Output checks see what the turn shows, stores and traces: each agent's reply (``reply``), whole,
before any of it reaches the page, and each tool's result as the page shows it (``tool_result``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from chorus.settings import Settings

log = logging.getLogger(__name__)

Stage = Literal["message", "tool_result", "reply"]


@dataclass(frozen=True)
class GuardCheck:
    """Where a text is in the turn, for a guard to decide on."""

    stage: Stage
    """``message`` (the user's), ``tool_result`` or ``reply`` (an agent's)."""
    user_id: str = ""
    thread_id: str = ""
    team: str = ""
    agent: str | None = None
    """The agent whose reply this is (``reply``)."""
    tool: str | None = None
    """The tool whose result this is (``tool_result``)."""
    system_message: str | None = None
    """The replying agent's instructions (``reply``), for checks that they are not repeated."""
    team_instructions: tuple[str, ...] = ()
    """Every member's instructions (``reply``): a member may quote another's."""


@dataclass(frozen=True)
class Verdict:
    """A guard's decision: let the text through, block it (the reason is shown to the user), or
    rewrite it (the new text goes on to the next guard, then where the text was going)."""

    action: Literal["pass", "block", "rewrite"]
    reason: str = ""
    text: str | None = None

    @classmethod
    def allow(cls) -> Verdict:
        return cls("pass")

    @classmethod
    def block(cls, reason: str) -> Verdict:
        return cls("block", reason=reason)

    @classmethod
    def rewrite(cls, text: str, reason: str = "") -> Verdict:
        return cls("rewrite", reason=reason, text=text)


@dataclass(frozen=True)
class GuardHook:
    """One guard: a plugin's hook implementation, or a built-in guard."""

    name: str
    kind: Literal["input", "output"]
    function: Callable[..., Any]
    argnames: tuple[str, ...] = ("text", "check", "settings")


@dataclass
class GuardOutcome:
    """What the guards made of a text."""

    text: str
    blocked: str | None = None
    """Why it was blocked (None: it goes on, as ``text``)."""
    changed_by: list[str] = field(default_factory=list)


BLOCKED_BY_ERROR = "a safety check could not run"


async def apply_guards(hooks: Iterable[GuardHook], kind: Literal["input", "output"], text: str, check: GuardCheck,
                       settings: Settings) -> GuardOutcome:
    """Every guard of ``kind``, in order, on ``text``. A guard that raises blocks the text (a
    check that cannot run is not a pass); the error is logged for the operator."""
    from chorus import metrics

    outcome = GuardOutcome(text=text)
    for hook in hooks:
        if hook.kind != kind:
            continue
        values = {"text": outcome.text, "check": check, "settings": settings}
        try:
            verdict = hook.function(**{k: v for k, v in values.items() if k in hook.argnames})
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except (Exception, SystemExit, KeyboardInterrupt):  # a plugin's guard never ends the process
            log.exception("guard %s failed on a %s; the text is blocked", hook.name, check.stage)
            metrics.GUARD_ACTIONS.labels(hook.name, check.stage, "error").inc()
            outcome.blocked = BLOCKED_BY_ERROR
            return outcome
        if verdict is None or not isinstance(verdict, Verdict) or verdict.action == "pass":
            continue
        metrics.GUARD_ACTIONS.labels(hook.name, check.stage, verdict.action).inc()
        if verdict.action == "block":
            outcome.blocked = verdict.reason or f"blocked by {hook.name}"
            log.info("guard %s blocked a %s: %s", hook.name, check.stage, outcome.blocked)
            return outcome
        if verdict.text is not None and verdict.text != outcome.text:
            outcome.text = verdict.text
            outcome.changed_by.append(hook.name)
    return outcome


@dataclass(frozen=True)
class TurnGuards:
    """The guards of the running turn, for the tools it calls (:data:`current_guards`)."""

    hooks: Sequence[GuardHook]
    settings: Settings
    check: GuardCheck

    async def tool_result(self, tool: str, text: str) -> str:
        """What the model reads of a tool's result: its input checks' text, or a note when blocked."""
        outcome = await apply_guards(self.hooks, "input", text, replace(self.check, stage="tool_result", tool=tool),
                                     self.settings)
        if outcome.blocked is not None:
            return f"[The result of {tool} was withheld by a safety check: {outcome.blocked}]"
        return outcome.text


current_guards: ContextVar[TurnGuards | None] = ContextVar("chorus_guards", default=None)
"""Set by the running turn when any input guard is on; plugin and MCP tools consult it."""


async def guard_tool_result(tool: str, text: str) -> str:
    """``text`` as the running turn's input guards let the model read it (unchanged outside a turn)."""
    guards = current_guards.get()
    return text if guards is None else await guards.tool_result(tool, text)
