"""The stream of deltas every model call reads: merged when they pile up, cut by a cancellation,
and the provider's finish reason in AutoGen's words."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator

from autogen_core import CancellationToken

from chorus.models.providers import Delta


async def coalesced(deltas: AsyncGenerator[Delta, None]) -> AsyncGenerator[Delta, None]:
    """``deltas``, read ahead by a task of their own; text that is already waiting when the
    consumer asks for more comes as one delta.

    A provider streaming at its own pace is passed through chunk by chunk. When the process is
    busy (hundreds of chats streaming), chunks pile up in the connection's buffer; merging
    them means AutoGen, the turn and the page handle one event instead of many, which is what
    keeps a loaded process from falling further behind. The first text is never held back.
    The joined text is exactly what the provider sent.
    """
    waiting: deque[Delta | BaseException | None] = deque()
    arrived = asyncio.Event()

    async def pump() -> None:
        try:
            async for delta in deltas:
                waiting.append(delta)
                arrived.set()
            waiting.append(None)
        except asyncio.CancelledError:
            raise  # the consumer is done with the stream
        except BaseException as exc:  # raised again in the consumer, where the call is handled
            waiting.append(exc)
        finally:
            arrived.set()

    reader = asyncio.create_task(pump())
    seen_text = False
    try:
        while True:
            if not waiting:
                arrived.clear()
                await arrived.wait()
            item = waiting.popleft()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            if seen_text and only_text(item):
                parts = [item.text or ""]
                while waiting and only_text(waiting[0]):
                    parts.append(waiting.popleft().text or "")  # type: ignore[union-attr]
                item = Delta(text="".join(parts))
            seen_text = seen_text or bool(item.text)
            yield item
    finally:
        reader.cancel()
        await asyncio.wait([reader])  # (not ``await reader``: its cancellation is not ours to raise)


def only_text(item: Delta | BaseException | None) -> bool:
    return isinstance(item, Delta) and bool(item.text) and not item.tool_calls and not item.finish_reason \
        and item.usage is None


async def cancellable(
    deltas: AsyncIterator[Delta], token: CancellationToken | None
) -> AsyncGenerator[Delta, None]:
    """Yield from ``deltas`` until ``token`` is cancelled, then raise CancelledError.

    Cancelling the token cancels the task that is waiting on the model (a
    provider may keep us waiting long between chunks), but only while this
    stream is being read: the token outlives the call.
    """
    if token is None:
        async for delta in deltas:
            yield delta
        return
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    reading = True

    def interrupt() -> None:
        # The token may be cancelled from another thread: cancel the task on its own loop.
        if reading and task is not None:
            loop.call_soon_threadsafe(task.cancel)

    token.add_callback(interrupt)
    try:
        async for delta in deltas:
            if token.is_cancelled():
                raise asyncio.CancelledError("model call cancelled")
            reading = False
            yield delta
            if token.is_cancelled():  # cancelled while the consumer handled this chunk
                raise asyncio.CancelledError("model call cancelled")
            reading = True
    finally:
        reading = False


def finish_reason_of(reason: str | None) -> str:
    if reason in (None, "stop", "end_turn", "eos"):
        return "stop"
    if reason in ("length", "max_tokens"):
        return "length"
    if reason == "content_filter":
        return "content_filter"
    if reason in ("tool_calls", "function_call"):
        return "function_calls"
    return "unknown"
