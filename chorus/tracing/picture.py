"""A picture of a turn: who spoke in what order, who selected or handed off to whom, which tools
each agent called (how often, how long), as a sequence diagram.

:func:`picture_of` reads a turn's events (with the times they happened, as
:class:`~chorus.tracing.spans.TurnRecord` and the page's renderer keep them);
:class:`TurnPicture` is the data (JSON for the page's stored step and the MLflow trace), and draws
itself as SVG (:meth:`TurnPicture.svg`, drawn here: no script, no outside request) and as
Mermaid text (:meth:`TurnPicture.mermaid`, for the trace and for anyone who wants to re-draw it).
:func:`conversation_picture` joins the pictures of a conversation's turns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any, Literal

from chorus.events import (
    HandoffEvent,
    MessageEvent,
    SelectionEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
    UsageEvent,
)

USER = "user"
SELECTOR = "selector"

PICTURED = (SelectionEvent, ToolCallEvent, ToolResultEvent, HandoffEvent, MessageEvent, UsageEvent)
"""The events a picture is drawn from."""

Kind = Literal["ask", "select", "handoff", "tool", "answer"]


@dataclass
class Arrow:
    """One row of the diagram: ``source`` to ``target`` (the same for a tool call)."""

    kind: Kind
    source: str
    target: str
    label: str
    ms: float | None = None
    """How long a tool call took (None while it had not returned when the turn ended)."""
    error: bool = False


@dataclass
class ToolUse:
    agent: str
    tool: str
    calls: int = 0
    ms: float = 0.0
    errors: int = 0


@dataclass
class TurnPicture:
    participants: list[str] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)

    # -- what it shows -----------------------------------------------------------------------

    @property
    def speakers(self) -> list[str]:
        """The agents that answered, in order (one entry per message)."""
        return [a.source for a in self.arrows if a.kind == "answer"]

    @property
    def tools(self) -> list[ToolUse]:
        """Each agent's tools: calls, total time and errors, in the order first called."""
        uses: dict[tuple[str, str], ToolUse] = {}
        for arrow in self.arrows:
            if arrow.kind == "tool":
                use = uses.setdefault((arrow.source, arrow.label), ToolUse(arrow.source, arrow.label))
                use.calls += 1
                use.ms += arrow.ms or 0.0
                use.errors += arrow.error
        return list(uses.values())

    def summary(self) -> str:
        """One line per fact, in words (the page shows it above the picture)."""
        lines = []
        if self.speakers:
            lines.append("Spoke: " + " → ".join(self.speakers))
        moves = [f"{a.source} → {a.target}" + (f" ({a.label})" if a.label else "")
                 for a in self.arrows if a.kind == "handoff"]
        if moves:
            lines.append("Handed off: " + "; ".join(moves))
        picks = [a.target for a in self.arrows if a.kind == "select"]
        if picks:
            lines.append("Selected: " + ", ".join(picks))
        for use in self.tools:
            errors = f", {use.errors} failed" if use.errors else ""
            lines.append(f"{use.agent} called {use.tool} ×{use.calls} ({use.ms:,.0f} ms{errors})")
        return "\n".join(lines) or "Nobody answered."

    # -- as data -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"participants": list(self.participants), "arrows": [asdict(a) for a in self.arrows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TurnPicture:
        return cls(participants=[str(p) for p in data.get("participants", [])],
                   arrows=[Arrow(**a) for a in data.get("arrows", [])])

    # -- drawn ---------------------------------------------------------------------------------

    def mermaid(self) -> str:
        lines = ["sequenceDiagram"]
        lines += [f"    participant {_mermaid_id(p)} as {p}" for p in self.participants]
        for a in self.arrows:
            line = {"select": "-->>", "handoff": "->>", "tool": "->>", "ask": "->>", "answer": "-->>"}[a.kind]
            lines.append(f"    {_mermaid_id(a.source)}{line}{_mermaid_id(a.target)}: {_mermaid_text(_label(a))}")
        return "\n".join(lines)

    def svg(self, title: str = "") -> str:
        """A sequence diagram: a column per participant, a row per arrow, time going down."""
        col, row, top, left = 170, 34, 62 if title else 40, 20
        width = max(left * 2 + col * max(len(self.participants), 1), 360) + 120  # room for a last tool's label
        height = top + row * (len(self.arrows) + 1) + 16
        x = {p: left + col * i + col // 2 for i, p in enumerate(self.participants)}
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
               f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" role="img">',
               f"<title>{escape(title or 'Turn map')}</title>",
               f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
               '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
               '<path d="M0,0 L8,4 L0,8 z" fill="#334155"/></marker></defs>']
        if title:
            out.append(f'<text x="{left}" y="22" font-size="14" font-weight="bold" fill="#0f172a">'
                       f"{escape(title)}</text>")
        for p, px in x.items():
            out.append(f'<line x1="{px}" y1="{top}" x2="{px}" y2="{height - 8}" stroke="#cbd5e1" '
                       'stroke-dasharray="4 3"/>')
            out.append(f'<rect x="{px - col // 2 + 8}" y="{top - 26}" width="{col - 16}" height="22" rx="6" '
                       f'fill="{_fill(p)}" stroke="#475569"/>')
            out.append(f'<text x="{px}" y="{top - 11}" text-anchor="middle" fill="#0f172a">'
                       f"{escape(_short(p, 22))}</text>")
        for i, a in enumerate(self.arrows):
            y = top + row * (i + 1)
            x1, x2 = x.get(a.source, left), x.get(a.target, left)
            colour = {"select": "#7c3aed", "handoff": "#c2410c", "tool": "#0369a1", "ask": "#334155",
                      "answer": "#15803d"}[a.kind]
            dash = ' stroke-dasharray="5 3"' if a.kind in ("select", "answer") else ""
            if x1 == x2:  # a tool call: a loop on the agent's own line
                out.append(f'<path d="M{x1},{y - 8} h28 v14 h-26" fill="none" stroke="{colour}"'
                           f' marker-end="url(#head)"/>')
                tx, anchor = x1 + 34, "start"
            else:
                out.append(f'<line x1="{x1}" y1="{y}" x2="{x2 - 6 if x2 > x1 else x2 + 6}" y2="{y}" '
                           f'stroke="{colour}" stroke-width="1.5"{dash} marker-end="url(#head)"/>')
                tx, anchor = (x1 + x2) // 2, "middle"
            out.append(f'<text x="{tx}" y="{y - 5}" text-anchor="{anchor}" fill="{colour}">'
                       f"{escape(_short(_label(a), 46))}</text>")
        out.append("</svg>")
        return "\n".join(out)


def picture_of(events: Iterable[tuple[int, TurnEvent]], *, message: str = "") -> TurnPicture:
    """The picture of one turn from its events, each with the time (ns) it happened.

    A selection counts when a selector model chose (its model call is among the events): a round
    robin or a swarm announces its next speaker too, but nobody selected it."""
    events = list(events)
    selected = any(isinstance(e, UsageEvent) and e.agent == SELECTOR for _, e in events)
    picture = TurnPicture(participants=[USER])
    started: dict[str, tuple[int, Arrow]] = {}

    def meet(name: str) -> None:
        if name not in picture.participants:
            picture.participants.append(name)

    asked = False
    for at, event in events:
        agent = getattr(event, "agent", None)
        if isinstance(event, SelectionEvent):
            if not selected:
                continue
            meet(SELECTOR)
            for chosen in event.agents:
                meet(chosen)
                if not asked:
                    picture.arrows.append(Arrow("ask", USER, SELECTOR, message))
                    asked = True
                picture.arrows.append(Arrow("select", SELECTOR, chosen, f"selects {chosen}"))
            continue
        if not isinstance(agent, str) or not isinstance(event, (ToolCallEvent, ToolResultEvent, HandoffEvent,
                                                                  MessageEvent)):
            continue
        meet(agent)
        if not asked:
            picture.arrows.append(Arrow("ask", USER, agent, message))
            asked = True
        if isinstance(event, ToolCallEvent):
            arrow = Arrow("tool", agent, agent, event.name)
            picture.arrows.append(arrow)
            started[event.call_id] = (at, arrow)
        elif isinstance(event, ToolResultEvent):
            begun = started.pop(event.call_id, None)
            if begun is not None:
                begun[1].ms = round((at - begun[0]) / 1e6, 1)
                begun[1].error = event.is_error
        elif isinstance(event, HandoffEvent):
            meet(event.target)
            picture.arrows.append(Arrow("handoff", agent, event.target, event.content))
        else:
            picture.arrows.append(Arrow("answer", agent, USER, _first_words(event.content)))
    return picture


def conversation_picture(turns: Sequence[TurnPicture]) -> TurnPicture:
    """The turns' pictures one after the other: every participant once, every arrow in order."""
    whole = TurnPicture(participants=[USER])
    for turn in turns:
        for p in turn.participants:
            if p not in whole.participants:
                whole.participants.append(p)
        whole.arrows.extend(turn.arrows)
    return whole


def _label(arrow: Arrow) -> str:
    if arrow.kind == "tool":
        took = "" if arrow.ms is None else f" ({arrow.ms:,.0f} ms)"
        return f"{arrow.label}{took}" + (" failed" if arrow.error else "")
    if arrow.kind == "handoff":
        return f"hands over: {arrow.label}" if arrow.label else "hands over"
    return arrow.label


def _first_words(text: str, most: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= most else flat[: most - 1].rstrip() + "…"


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _fill(name: str) -> str:
    return {USER: "#e0f2fe", SELECTOR: "#ede9fe"}.get(name, "#f1f5f9")


def _mermaid_id(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name) or "_"


def _mermaid_text(text: str) -> str:
    return " ".join(text.replace(";", ",").replace("#", "").split())[:80] or " "
