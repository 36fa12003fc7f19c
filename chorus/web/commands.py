"""The composer's commands: **Export** (the conversation as Markdown or JSON), **Map** (the
conversation as a picture, :mod:`chorus.web.pictures`) and **Memories** (what the team remembers
about the user, each with a button that forgets it)."""

from __future__ import annotations

from typing import Any, Literal

import chainlit as cl

from chorus.turn import ChatSession
from chorus.web.audit import note
from chorus.web.context import SYSTEM, current
from chorus.web.pictures import MAP_COMMAND


def register() -> None:
    """The memory buttons' callbacks."""
    cl.action_callback("forget_memory")(forget_memory)
    cl.action_callback("forget_all_memories")(forget_all_memories)


EXPORT_COMMAND = "Export"
MEMORIES_COMMAND = "Memories"
MEMORIES_SHOWN = 25


async def offer_commands() -> None:
    """The composer's buttons this chat gets: Export with history on, Map always, Memories for a user with memory."""
    commands: list[Any] = []
    if current().history:
        commands.append({
            "id": EXPORT_COMMAND,
            "description": "Download this conversation as Markdown (write 'json' for JSON)",
            "icon": "download",
            "button": True,
            "persistent": False,
            "selected": False,
        })
    commands.append({
        "id": MAP_COMMAND,
        "description": "Draw this conversation: who spoke, who handed over to whom, which tools ran",
        "icon": "network",
        "button": True,
        "persistent": False,
        "selected": False,
    })
    if _user_memory() is not None:  # logged-in users only: anonymous visitors have no memory
        commands.append({
            "id": MEMORIES_COMMAND,
            "description": "See what the team remembers about you, and forget any of it",
            "icon": "brain",
            "button": True,
            "persistent": False,
            "selected": False,
        })
    if commands:
        await cl.context.emitter.set_commands(commands)


def _user_memory() -> Any:
    session = cl.user_session.get("chorus")
    context = session.tool_context if isinstance(session, ChatSession) else None
    return context.memory if context is not None else None


async def show_memories() -> None:
    """The user's memories, each with a button that forgets it (their own only: the memory
    object is bound to the logged-in user by the session)."""
    memory = _user_memory()
    if memory is None:
        service = current().chorus.memory
        reason = service.problem if service is not None and service.problem else (
            "memories are kept only for logged-in users")
        await cl.Message(content=f"ℹ️ Nothing is remembered here: {reason}.", author=SYSTEM).send()
        return
    items = await memory.list()
    if not items:
        await cl.Message(content="The team remembers nothing about you yet. Tell it about your favourite "
                                 "artists or genres and it will keep them for later conversations.",
                         author=SYSTEM).send()
        return
    shown = items[-MEMORIES_SHOWN:]
    lines = "\n".join(f"{n}. {item.text} _(saved {item.created_at[:10]})_" for n, item in enumerate(shown, start=1))
    more = f"\n\n…and {len(items) - len(shown)} older ones." if len(items) > len(shown) else ""
    actions = [cl.Action(name="forget_memory", payload={"id": item.id, "text": item.text[:80]},
                         label=f"Forget {n}", icon="trash-2") for n, item in enumerate(shown, start=1)]
    actions.append(cl.Action(name="forget_all_memories", payload={}, label="Forget everything", icon="trash"))
    await cl.Message(content=f"**What the team remembers about you** ({len(items)}):\n\n{lines}{more}",
                     author=SYSTEM, actions=actions).send()


async def forget_memory(action: cl.Action) -> None:
    memory = _user_memory()
    if memory is not None and await memory.forget(str(action.payload.get("id", ""))):
        await note("memory_forgotten", str(action.payload.get("id", "")))
        await cl.Message(content=f"Forgotten: “{action.payload.get('text', '')}”.", author=SYSTEM).send()
        await action.remove()
    else:
        await cl.Message(content="That memory was already forgotten.", author=SYSTEM).send()


async def forget_all_memories(action: cl.Action) -> None:
    memory = _user_memory()
    count = await memory.forget_all() if memory is not None else 0
    await note("memory_forgotten", "all", {"count": count})
    await cl.Message(content=f"Forgotten: all {count} memories. The team starts afresh with you.",
                     author=SYSTEM).send()


async def export(message: cl.Message) -> None:
    """The current conversation as a file: the user's own thread only."""
    from chorus.store.export import ThreadNotFound, load_thread, render

    fmt: Literal["md", "json"] = "json" if "json" in (message.content or "").lower() else "md"
    user = cl.user_session.get("user")
    thread_id = cl.context.session.thread_id
    try:
        # The request itself is not part of the conversation it exports (Chainlit may or may not
        # have stored it by now).
        thread = await load_thread(current().engine(), thread_id, owner=getattr(user, "identifier", None) or "",
                                   leave_out={message.id})
    except ThreadNotFound:
        await cl.ErrorMessage(content="There is nothing to export yet: ask the team something first.",
                              author=SYSTEM).send()
        return
    name = f"chorus-{thread_id[:8]}.{fmt}"
    await note("conversation_exported", thread_id, {"format": fmt})
    mime = "text/markdown" if fmt == "md" else "application/json"
    file = cl.File(name=name, content=render(thread, fmt).encode("utf-8"), mime=mime, display="inline")
    await cl.Message(content=f"Here is this conversation as {fmt.upper()}: {name}", author=SYSTEM,
                     elements=[file]).send()
