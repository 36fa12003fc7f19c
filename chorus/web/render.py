"""A turn's events on the page: each agent's reply streamed into one message, tool calls and
retrievals as steps, notices and errors, and the folded tokens-and-cost step with the trace link.

Streamed text is batched (:class:`Stream`), and a long reply is stored as it goes, marked
interrupted, so that a crash leaves what was said (:class:`Renderer`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import chainlit as cl
from chainlit.data import get_data_layer

from chorus.events import (
    ApprovalDoneEvent,
    ApprovalEvent,
    DoneEvent,
    ErrorEvent,
    HandoffEvent,
    MessageEvent,
    NoticeEvent,
    ProgressEvent,
    RetrievalEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
)
from chorus.produced import files_in
from chorus.tracing.picture import PICTURED, picture_of
from chorus.web import chainlit_fixes
from chorus.web.approvals import ApprovalMessages
from chorus.web.context import SYSTEM, current
from chorus.web.guard import ImageGuard, neutralise_images
from chorus.web.pictures import picture_step

log = logging.getLogger("chorus.app")

PARTIAL_REPLY_EVERY_S = 1.5
STREAM_FLUSH_S = 0.04  # streamed text is sent at most this often per reply (Stream)
INTERRUPTED_MARK = "\n\n⚠️ _Interrupted: the server stopped before this reply was finished._"


class Stream:
    """One agent's reply as it streams to the page.

    The first text goes out at once; after that, text is sent at most once per
    ``STREAM_FLUSH_S``, joined, instead of one socket event per model chunk. At a real model's
    pace that is two or three chunks per event, and under load it is what keeps a process
    serving hundreds of chats: each socket event costs far more than the text it carries.
    The page still looks live (a pause of at most ``STREAM_FLUSH_S``), and what it shows in
    the end is exactly the model's text (the finished message replaces it).
    """

    def __init__(self, msg: cl.Message) -> None:
        self.msg = msg
        self.guard = ImageGuard()  # model output never embeds an image (chorus.web.guard)
        self._pending: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        self._sending = False  # the flusher is past its wait: let it finish rather than cancel it
        self._finished = False

    async def feed(self, text: str) -> None:
        text = self.guard.feed(text)
        if not text:
            return
        if not self.msg.streaming:  # the first text of the reply: no waiting
            await self.msg.stream_token(text)
            return
        self._pending.append(text)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(STREAM_FLUSH_S)
        self._sending = True
        try:
            await self._flush()
        finally:
            self._sending = False
            self._flusher = None
            if self._pending and not self._finished:  # text came while this batch was being sent
                self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            await self.msg.stream_token(text)

    async def finish(self) -> cl.Message:
        """Send what is still pending (in order, before the caller sends the finished message)."""
        self._finished = True
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            if self._sending:
                await flusher
            else:
                flusher.cancel()
        await self._flush()
        return self.msg


class Renderer:
    """Turns one turn's events into Chainlit messages (one per agent reply) and tool steps.

    A message is sent (and so stored) once, when it is finished: sending it early and
    updating it later races two writes to the database, and the empty one could win.
    """

    def __init__(self, persist_every: float | None = None, turn_id: str = "", message: str = "",
                 message_id: str | None = None) -> None:
        self.message, self.message_id = message, message_id  # the user's, for the turn's picture
        self.seen: list[tuple[int, TurnEvent]] = []  # what the turn's picture is drawn from
        self.turn_id = turn_id  # on every reply's metadata: feedback finds the turn's trace by it
        self.streams: dict[str, Stream] = {}  # the open reply of each agent speaking now
        self.steps: dict[str, cl.Step] = {}
        self.progress: cl.Step | None = None  # a pipeline's or graph's "step 3 of 5: coder"
        self.passed: list[str] = []
        self.persist_every = persist_every
        self.persisted_at: dict[str, float] = {}
        self.approvals = ApprovalMessages()

    async def _persist_partial(self, msg: cl.Message) -> None:
        """Store the reply so far, marked interrupted: what a crash leaves is what was said."""
        now = time.monotonic()
        if self.persist_every is None or now - self.persisted_at.setdefault(msg.id, now) < self.persist_every:
            return
        self.persisted_at[msg.id] = now
        partial = msg.to_dict()
        partial["output"] = (msg.content or "") + INTERRUPTED_MARK
        partial["streaming"] = False
        try:
            await get_data_layer().create_step(partial)
        except Exception as exc:  # never let a storage hiccup break the live stream
            log.error("could not checkpoint a streaming reply (step %s): %s", msg.id, exc)

    def _stream(self, agent: str) -> Stream:
        stream = self.streams.get(agent)
        if stream is None:
            msg = cl.Message(content="", author=agent, metadata={"turn_id": self.turn_id})
            msg.created_at = chainlit_fixes.utc_now()  # a partial checkpoint must sort where the reply began
            stream = self.streams[agent] = Stream(msg)
        return stream

    async def show(self, event: TurnEvent) -> None:
        if isinstance(event, PICTURED):
            self.seen.append((time.time_ns(), event))
        if isinstance(event, TokenEvent):
            stream = self._stream(event.agent)
            await stream.feed(event.text)
            await self._persist_partial(stream.msg)
        elif isinstance(event, MessageEvent):
            streamed = self.streams.get(event.agent)
            content = neutralise_images(event.content)
            files = downloads(event.content)  # a coder's files, to download from the reply
            if streamed is None:
                await cl.Message(content=content, author=event.agent, metadata={"turn_id": self.turn_id},
                                 elements=files).send()
            else:
                msg = await streamed.finish()
                msg.content = content  # the finished text is the truth, whatever streamed
                msg.elements = files
                await msg.send()
                # Only now: a stop that lands while it is sent still finds it, and close() ends it.
                self.streams.pop(event.agent, None)
        elif isinstance(event, ToolCallEvent):
            step = cl.Step(name=event.name, type="tool", show_input="json")
            step.input = event.parsed_arguments()
            self.steps[event.call_id] = step
            await step.send()
        elif isinstance(event, ToolResultEvent):
            step = self.steps.pop(event.call_id) if event.call_id in self.steps else cl.Step(event.name, type="tool")
            step.output = neutralise_images(event.result)
            step.is_error = event.is_error
            await step.update()
        elif isinstance(event, RetrievalEvent):
            step = cl.Step(name=event.kind, type="retrieval")  # the page shows "Used memory"
            step.output = neutralise_images("\n".join(f"- {item}" for item in event.items) or "(nothing)")
            await step.send()
        elif isinstance(event, ApprovalEvent):  # a tool waits for the user's Approve or Deny
            await self.approvals.ask(event)
        elif isinstance(event, ApprovalDoneEvent):
            await self.approvals.settled(event)
        elif isinstance(event, ProgressEvent):
            await self._progress(event)
        elif isinstance(event, HandoffEvent):  # a swarm's member handed the conversation on
            step = cl.Step(name=f"{event.agent} → {event.target}", type="undefined")
            step.output = neutralise_images(event.content or f"{event.agent} hands the conversation over.")
            await step.send()
        elif isinstance(event, ErrorEvent):  # may quote a provider's or a tool's text: no images from it
            await cl.ErrorMessage(content=neutralise_images(event.message), author=SYSTEM).send()
        elif isinstance(event, NoticeEvent):
            prefix = "⚠️ " if event.level == "warning" else "ℹ️ "
            await cl.Message(content=prefix + neutralise_images(event.text), author=SYSTEM).send()
        elif isinstance(event, DoneEvent):
            await self.close()
            if self.progress is not None:
                self.progress.name = f"{len(self.passed)} step{'s' if len(self.passed) != 1 else ''}: " + \
                    " → ".join(self.passed)
                finished = event.stop_reason in ("completed", "max_messages", "text_mention")
                self.progress.output = "\n".join(
                    f"✓ {agent}" if finished or i < len(self.passed) - 1 else f"✗ {agent} ({event.stop_reason})"
                    for i, agent in enumerate(self.passed))
                await self.progress.update()
            if event.prompt_tokens or event.completion_tokens:
                await usage_step(event, traced=current().chorus.tracer is not None)
            picture = picture_of(self.seen, message=self.message)
            if picture.speakers or picture.arrows[1:]:
                await picture_step(picture, event.turn_id or self.turn_id, self.message_id)

    async def _progress(self, event: ProgressEvent) -> None:
        """One step that says where the pipeline is while it runs, and which steps ran once it is done."""
        self.passed.append(event.agent)
        lines = [f"✓ {agent}" for agent in self.passed[:-1]] + [f"… {event.agent}"]
        if self.progress is None:
            self.progress = cl.Step(name=event.text, type="undefined")
            self.progress.output = "\n".join(lines)
            await self.progress.send()
            return
        self.progress.name = event.text
        self.progress.output = "\n".join(lines)
        await self.progress.update()

    async def close(self) -> None:
        """Finish every message still streaming (a stop cut it short): keep what was said."""
        open_streams, self.streams = list(self.streams.values()), {}
        for stream in open_streams:
            msg = await stream.finish()
            if current().draining is not None:  # the server, not the user, cut it short: the history says so
                msg.content = (msg.content or "") + INTERRUPTED_MARK
            await msg.send()


def downloads(text: str) -> list[Any]:  # (Chainlit elements)
    """The files a reply carries (:mod:`chorus.produced`), as Chainlit file elements."""
    return [cl.File(name=f.name.replace("/", "_"), content=f.content.encode("utf-8"), mime="text/plain",
                    display="inline") for f in files_in(text)]


async def usage_step(done: DoneEvent, traced: bool) -> None:
    """The turn's tokens and cost, folded under its answer, with the link to its trace."""
    cost = "price unknown" if done.cost is None else f"${done.cost:,.4f}"
    step = cl.Step(name="tokens and cost", type="undefined")
    step.output = (f"{done.prompt_tokens + done.completion_tokens:,} tokens ({done.prompt_tokens:,} in, "
                   f"{done.completion_tokens:,} out) · {cost} · {done.duration_ms / 1000:.1f} s")
    if traced and done.turn_id:
        step.output += f" · [trace in MLflow](/chorus/trace/{done.turn_id})"
    await step.send()
