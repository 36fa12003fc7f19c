"""A conversation as Markdown or JSON: ``chorus export`` and the page's export buttons."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.store.schema import steps, threads

Format = Literal["md", "json"]
_MESSAGE_TYPES = ("user_message", "assistant_message")


class ThreadNotFound(LookupError):
    """No such thread (or, with an owner given, not one of theirs)."""


@dataclass
class ExportedStep:
    kind: Literal["message", "tool"]
    author: str
    text: str
    created_at: str | None
    input: str | None = None
    is_error: bool = False
    command: str | None = None  # the composer command the user's message was sent with (e.g. Export)


@dataclass
class ExportedThread:
    id: str
    name: str | None
    user: str | None
    created_at: str | None
    team: str | None = None  # the chat profile (team title) the conversation was held with
    steps: list[ExportedStep] = field(default_factory=list)


async def load_thread(engine: AsyncEngine, thread_id: str, *, owner: str | None = None,
                      leave_out: Collection[str] = ()) -> ExportedThread:
    """The thread's messages and tool calls in order; ``owner`` restricts it to that user's threads.

    Steps whose id is in ``leave_out`` are skipped (the page's export request itself), and so are
    messages with nothing in them: no empty section in an export."""
    async with engine.connect() as conn:
        query = sa.select(threads).where(threads.c.id == thread_id)
        if owner is not None:
            query = query.where(threads.c.userIdentifier == owner)
        head = (await conn.execute(query)).mappings().first()
        if head is None:
            raise ThreadNotFound(f"no conversation {thread_id!r}" + (f" of user {owner!r}" if owner else ""))
        rows = (
            await conn.execute(
                sa.select(steps).where(steps.c.threadId == thread_id).order_by(steps.c.createdAt, steps.c.start)
            )
        ).mappings().all()
    meta = head["metadata"]
    meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
    result = ExportedThread(id=thread_id, name=head["name"], user=head["userIdentifier"], created_at=head["createdAt"],
                            team=meta.get("chat_profile"))
    for row in rows:
        if row["id"] in leave_out:
            continue
        if row["type"] in _MESSAGE_TYPES:
            text, command = row["output"] or "", row["command"] or None
            if not text.strip() and not command:
                continue
            result.steps.append(ExportedStep("message", row["name"], text, row["createdAt"],
                                             is_error=bool(row["isError"]), command=command))
        elif row["type"] == "tool":
            result.steps.append(ExportedStep("tool", row["name"], row["output"] or "", row["createdAt"],
                                             input=row["input"], is_error=bool(row["isError"])))
    return result


def to_json(thread: ExportedThread) -> str:
    return json.dumps(asdict(thread), indent=2, ensure_ascii=False)


def to_markdown(thread: ExportedThread) -> str:
    lines = [f"# {thread.name or 'Conversation'}", ""]
    lines.append(f"- thread: `{thread.id}`")
    if thread.user:
        lines.append(f"- user: {thread.user}")
    if thread.team:
        lines.append(f"- team: {thread.team}")
    if thread.created_at:
        lines.append(f"- started: {thread.created_at}")
    for step in thread.steps:
        lines.append("")
        if step.kind == "message":
            text = f"**{step.command}** {step.text}".strip() if step.command else step.text
            lines += [f"## {step.author}" + (" (error)" if step.is_error else ""), "", text]
        else:
            lines += [f"> **tool {step.author}**" + (" (error)" if step.is_error else "")]
            if step.input:
                lines.append(f"> input: `{_one_line(step.input)}`")
            lines.append(f"> result: {_one_line(step.text)}")
    return "\n".join(lines).rstrip() + "\n"


async def step_commands(engine: AsyncEngine, thread_id: str) -> dict[str, str]:
    """The composer command of each message of the thread sent with one: step id -> command.

    Chainlit stores a message's command but leaves it out when it reopens the thread, so a message
    sent with a command and no text (the Export button) came back as an empty bubble."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(steps.c.id, steps.c.command).where(
            steps.c.threadId == thread_id, steps.c.command.is_not(None), steps.c.command != ""))
        return {str(step_id): str(command) for step_id, command in rows}


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render(thread: ExportedThread, fmt: Format) -> str:
    return to_markdown(thread) if fmt == "md" else to_json(thread)


TURN_MAP_KEY = "chorus_turn_map"
"""Where a turn's picture (:class:`chorus.tracing.picture.TurnPicture` as a dict) sits in the
metadata of its "turn map" step."""


async def turn_maps(engine: AsyncEngine, thread_id: str, *, owner: str) -> list[tuple[str | None, dict[str, object]]]:
    """The pictures of the thread's turns in the order they were drawn, each with the id of the user's
    message it answers; only ``owner``'s thread (else ThreadNotFound)."""
    async with engine.connect() as conn:
        head = (await conn.execute(sa.select(threads.c.id).where(
            threads.c.id == thread_id, threads.c.userIdentifier == owner))).first()
        if head is None:
            raise ThreadNotFound(f"no conversation {thread_id!r} of user {owner!r}")
        rows = await conn.execute(sa.select(steps.c.metadata).where(steps.c.threadId == thread_id)
                                  .order_by(steps.c.createdAt, steps.c.start))
        found = []
        for (meta,) in rows:
            meta = json.loads(meta) if isinstance(meta, str) else meta
            if isinstance(meta, dict) and isinstance(meta.get(TURN_MAP_KEY), dict):
                message_id = meta.get("message_id")
                found.append((message_id if isinstance(message_id, str) else None, meta[TURN_MAP_KEY]))
        return found
