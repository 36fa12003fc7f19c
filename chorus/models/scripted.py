"""A scripted model: replies queued by the caller, for tests (yours and plugin authors').

``CHORUS_MODEL=scripted`` (or ``model: scripted`` on one agent) routes calls
to the process-wide :data:`scripted_model`. Queue what it should answer, in
order, including the speaker names a selector team asks for::

    from chorus.models import scripted_model, tool_call
    scripted_model.queue("assistant", tool_call("current_time", timezone="UTC"), "It is noon.")

Every request (the latest 1,000) is kept in ``scripted_model.requests`` so a test can
check what the model was shown.

A test is better off with an instance of its own, which no other test can queue into or reset:
``make_chorus(model=ScriptedModel(...))`` (:mod:`chorus.testing`) registers it under a name of its
own for that test only.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

from chorus.models.local import ModelReply, ModelRequest, ToolCall, register_local_model

Reply = str | ModelReply | Callable[[ModelRequest], "str | ModelReply"]


KEEP_REQUESTS = 1000


class ScriptExhausted(RuntimeError):
    """The scripted model was called with no reply queued."""


def tool_call(name: str, /, **arguments: Any) -> ModelReply:
    """A scripted reply that calls tool ``name`` with ``arguments``."""
    return ModelReply(tool_calls=(ToolCall(name=name, arguments=arguments),))


class ScriptedModel:
    """A local model that answers from a queue (or from ``default`` when it is empty)."""

    def __init__(self, *replies: Reply, default: Reply | None = None, token_delay: float = 0.0) -> None:
        self._queue: deque[Reply] = deque(replies)
        self.default = default
        self.token_delay = token_delay
        self.requests: list[ModelRequest] = []

    def queue(self, *replies: Reply) -> ScriptedModel:
        """Append replies; returns self so calls chain."""
        self._queue.extend(replies)
        return self

    def reset(self) -> None:
        """Forget queued replies, recorded requests and the default."""
        self._queue.clear()
        self.requests.clear()
        self.default = None
        self.token_delay = 0.0

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def reply(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        if len(self.requests) > KEEP_REQUESTS:  # a long-running server (bench/load.py) must not grow
            del self.requests[: len(self.requests) - KEEP_REQUESTS]
        if self._queue:
            reply = self._queue.popleft()
        elif self.default is not None:
            reply = self.default
        else:
            raise ScriptExhausted(
                f"the scripted model was called ({request.hints.role} {request.hints.agent or ''}) "
                "with no reply queued"
            )
        if callable(reply):
            reply = reply(request)
        return ModelReply(text=reply) if isinstance(reply, str) else reply


scripted_model = ScriptedModel(default=os.environ.get("CHORUS_SCRIPTED_REPLY") or None)
"""The instance ``CHORUS_MODEL=scripted`` uses. ``CHORUS_SCRIPTED_REPLY`` sets its default reply, so
a server started in another process (``bench/load.py``) answers every call with that text."""

register_local_model("scripted", lambda: scripted_model)
