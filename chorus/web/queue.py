"""A chat's messages, answered one at a time in the order they arrived.

A message sent while the team is answering waits for the messages before it, under a note that
only the page shows (it is not stored). The stop button stops the running turn and every message
waiting behind it.
"""

from __future__ import annotations

import asyncio

import chainlit as cl

from chorus.web.context import SYSTEM

QUEUED_NOTE = "⏳ Queued: the team answers this as soon as it has finished with your previous message."
STOPPED_NOTE = "⏹️ Stopped before the team got to this message: send it again to ask."


class Line:
    """This chat's queue of messages (kept in its Chainlit user session)."""

    def __init__(self) -> None:
        self.last: asyncio.Future[None] | None = None  # done when the newest message is answered
        self.stops = 0  # how often the stop button was pressed

    def join(self) -> tuple[asyncio.Future[None] | None, asyncio.Future[None], int]:
        before, mine = self.last, asyncio.get_running_loop().create_future()
        self.last = mine
        return before, mine, self.stops

    @staticmethod
    def leave(before: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        """Let the next message go, once every message before this one is done too."""
        def done(_: object = None) -> None:
            if not mine.done():
                mine.set_result(None)

        if before is None or before.done():
            done()
        else:  # stopped while waiting: the next one still waits for those before us
            before.add_done_callback(done)


def line() -> Line:
    """This chat's line (made on first use)."""
    found = cl.user_session.get("line")
    if not isinstance(found, Line):
        found = Line()
        cl.user_session.set("line", found)
    return found


async def wait_in_line(before: asyncio.Future[None], queue: Line, stops: int) -> bool:
    """Wait for the messages before this one; False when the stop button was pressed meanwhile."""
    note = cl.Message(content=QUEUED_NOTE, author=SYSTEM)
    emitter = cl.context.emitter
    await emitter.send_step(note.to_dict())
    try:
        await asyncio.wait([before])  # (not ``await before``: that would cancel it with us)
    except asyncio.CancelledError:  # the stop button cancels the newest message's task
        note.content = STOPPED_NOTE
        await emitter.update_step(note.to_dict())
        raise
    if queue.stops != stops:
        note.content = STOPPED_NOTE
        await emitter.update_step(note.to_dict())
        return False
    await emitter.delete_step(note.to_dict())
    await emitter.task_start()  # the previous message's end told the page the team was idle
    return True
