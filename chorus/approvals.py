"""Approvals: a tool with consequences waits for a person before it runs (README, "Approvals").

A tool needs approval when its :class:`~chorus.ToolSpec` says ``requires_approval=True``, when a
team file lists it under ``approvals:``, or when its MCP server's entry says ``requires_approval``.
Every tool call of a turn passes the turn's gate, a context variable the runner sets (as the journal
of :mod:`chorus.journal` is set): the plugins' tools (:mod:`chorus.plugins`) and MCP tools
(:mod:`chorus.mcp`) call :func:`gated`. Outside a turn there is no gate and a tool just runs.

The gate itself (:mod:`chorus.turn.approving`) stores the request, shows it to the user, waits for
an answer and returns what the model is told when the answer is no.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


class Gate(Protocol):
    async def permit(self, tool: str, arguments: Mapping[str, Any]) -> str | None:
        """None when ``tool`` may run with ``arguments`` (it needs no approval, or a person approved);
        otherwise what the model is told instead of the tool's result (denied, expired, cannot ask)."""
        ...


@dataclass
class Approvals:
    """A conversation's way to ask its user (``ChatSession.approvals``): requests are stored in
    ``engine`` and wait ``timeout_s``; ``run_id`` ties them to a background run (answered through
    the runs API). A conversation without it (``chorus ask``, the chat-completions API) cannot ask,
    and such calls are refused."""

    engine: AsyncEngine
    timeout_s: float = 600.0
    run_id: str | None = None


current_gate: ContextVar[Gate | None] = ContextVar("chorus_approval_gate", default=None)


def arguments_of(args: Any) -> dict[str, Any]:
    """A tool call's arguments as plain JSON data (a pydantic model's dump, or the mapping)."""
    if hasattr(args, "model_dump"):
        dumped = args.model_dump(mode="json", exclude_unset=True)  # as the model gave them
        return dict(dumped) if isinstance(dumped, Mapping) else {}
    return dict(args) if isinstance(args, Mapping) else {}


async def gated(tool: str, args: Any, call: Callable[[], Awaitable[Any]]) -> Any:
    """``call()``'s result once the turn's gate lets ``tool`` run; else the gate's refusal (text the
    model reads as the tool's result, so the agent can tell the user)."""
    gate = current_gate.get()
    if gate is not None:
        refusal = await gate.permit(tool, arguments_of(args))
        if refusal is not None:
            return refusal
    return await call()
