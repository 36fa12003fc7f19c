"""The OpenAI-compatible endpoints: ``GET /v1/models`` (the teams a key may use, as ``chorus/<team>``)
and ``POST /v1/chat/completions``, streamed (server-sent events ending in ``data: [DONE]``) or not.

A request's messages become the team's task through ``run_turn``, the path every front end takes.
Each streamed chunk names the agent speaking in its ``agent`` field (and, with ``agent_names:
"prefix"``, in the text); tool calls, selections and handoffs stay out of the text. Chorus's own
answers ride in a ``chorus`` object (the conversation's id, the turn's id, notices, cost). With
``chorus_thread_id`` (or the ``X-Chorus-Thread-Id`` header) the request continues a stored
conversation, the same one the page shows; ``"new"`` starts one.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from chorus.events import DoneEvent, ErrorEvent, MessageEvent, NoticeEvent, TokenEvent, TurnEvent
from chorus.service import Conversation
from chorus.store.keys import ApiKey
from chorus.web.api.errors import ApiError

MODEL_PREFIX = "chorus/"
THREAD_HEADER = "X-Chorus-Thread-Id"
REJECTED = {"empty_message": 400, "message_too_long": 400, "busy": 409, "budget": 429}
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


@dataclass
class ChatRequest:
    """What a chat-completions body asks for, checked."""

    team: str
    text: str
    """The team's task: the last user message, after the conversation so far (when the client
    sends it, as OpenAI clients do)."""
    typed: str
    """The last user message alone: what a stored conversation shows as the user's."""
    stream: bool = False
    include_usage: bool = False
    thread: str | None = None
    prefix_names: bool = False
    dropped: int = 0
    """Earlier messages left out to keep the task under the message limit."""
    options: dict[str, Any] = field(default_factory=dict)


def team_of_model(model: str) -> str:
    return model[len(MODEL_PREFIX):] if model.startswith(MODEL_PREFIX) else model


def _text_of(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ApiError(400, f"messages[{index}]: only text content is supported (got {kind!r}).",
                               param=f"messages[{index}].content", code="unsupported_content")
            parts.append(part["text"])
        return "\n".join(parts)
    raise ApiError(400, f"messages[{index}].content must be a string or a list of text parts.",
                   param=f"messages[{index}].content", code="invalid_value")


def parse_request(body: dict[str, Any], headers: Any, max_chars: int, default_prefix: bool) -> ChatRequest:
    """The body as a :class:`ChatRequest`; ApiError 400 says what is wrong with it."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "'model' is required: a team as 'chorus/<team>' (GET /v1/models lists them).",
                       param="model", code="missing_model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' is required: a non-empty list of {role, content}.", param="messages",
                       code="missing_messages")
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise ApiError(400, f"messages[{i}] must be an object with a role ({', '.join(_ROLES[:4])}).",
                           param=f"messages[{i}]", code="invalid_message")
        turns.append((str(message["role"]), _text_of(message, i)))
    if turns[-1][0] != "user":
        raise ApiError(400, "The last message must be the user's (role 'user'): it is what the team answers.",
                       param="messages", code="last_message_not_user")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false.", param="stream", code="invalid_value")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "'stream_options' must be an object.", param="stream_options", code="invalid_value")
    names = body.get("agent_names", "prefix" if default_prefix else "field")
    if names not in ("field", "prefix"):
        raise ApiError(400, "'agent_names' is 'field' or 'prefix'.", param="agent_names", code="invalid_value")
    thread = body.get("chorus_thread_id", headers.get(THREAD_HEADER.lower()))
    if thread is not None and (not isinstance(thread, str) or not thread.strip()):
        raise ApiError(400, "'chorus_thread_id' is a conversation's id, or 'new'.", param="chorus_thread_id",
                       code="invalid_value")
    typed = turns[-1][1]
    text, dropped = typed, 0
    earlier = [(role, content) for role, content in turns[:-1] if content.strip()]
    if earlier and thread is None:  # a stored conversation remembers; a stateless client sends it all
        text, dropped = _with_history(earlier, typed, max_chars)
    return ChatRequest(team=team_of_model(model.strip()), text=text, typed=typed, stream=stream,
                       include_usage=bool(options.get("include_usage")), thread=thread.strip() if thread else None,
                       prefix_names=names == "prefix", dropped=dropped)


def _with_history(earlier: list[tuple[str, str]], last: str, max_chars: int) -> tuple[str, int]:
    """The last message after the conversation so far, the oldest messages left out when they would
    take the task over ``max_chars``: (the task, how many were left out)."""
    head, tail = "The conversation so far:\n\n", "\n\nThe user's new message:\n\n"
    lines = [f"[{'instructions' if role in ('system', 'developer') else role}] {content.strip()}"
             for role, content in earlier]
    room = max_chars - len(last) - len(head) - len(tail)
    kept: list[str] = []
    for line in reversed(lines):
        if room - len(line) - 2 < 0:
            break
        kept.insert(0, line)
        room -= len(line) + 2
    if not kept:
        return last, len(lines)
    return head + "\n\n".join(kept) + tail + last, len(lines) - len(kept)


class Reply:
    """A turn's events as OpenAI's chat-completion shapes."""

    def __init__(self, request: ChatRequest, conversation: Conversation, model: str) -> None:
        self.request = request
        self.conversation = conversation
        self.model = model
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.speaking: str | None = None
        self.streamed: set[str] = set()
        self.text: list[str] = []
        self.messages: list[dict[str, str]] = []
        self.notices: list[dict[str, str]] = []
        self.done: DoneEvent | None = None
        self.error: ErrorEvent | None = None

    def feed(self, event: TurnEvent) -> tuple[str, str] | None:
        """Take in one event; (agent, text to add to the reply) when it adds any."""
        if isinstance(event, TokenEvent) and event.text:
            self.streamed.add(event.agent)
            return event.agent, self._piece(event.agent, event.text)
        if isinstance(event, MessageEvent):
            if event.content.strip():
                self.messages.append({"agent": event.agent, "content": event.content})
            if event.agent in self.streamed:
                self.streamed.discard(event.agent)
                return None
            if event.content.strip():
                return event.agent, self._piece(event.agent, event.content)
        elif isinstance(event, NoticeEvent):
            self.notices.append({"code": event.code, "level": event.level, "text": event.text})
        elif isinstance(event, ErrorEvent):
            self.error = event
        elif isinstance(event, DoneEvent):
            self.done = event
        return None

    def _piece(self, agent: str, text: str) -> str:
        """``text`` as it joins the reply: a new speaker starts a paragraph (named, with prefixes on)."""
        if agent != self.speaking:
            lead = "\n\n" if self.speaking is not None else ""
            self.speaking = agent
            text = lead + (f"**{agent}:** " if self.request.prefix_names else "") + text
        self.text.append(text)
        return text

    def finish_reason(self) -> str:
        return "length" if self.done is not None and self.done.stop_reason == "budget" else "stop"

    def usage(self) -> dict[str, Any]:
        done = self.done or DoneEvent(stop_reason="stopped")
        return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                "total_tokens": done.prompt_tokens + done.completion_tokens, "cost": done.cost}

    def extension(self) -> dict[str, Any]:
        """Chorus's part of the answer (the ``chorus`` field)."""
        done = self.done
        return {
            "thread_id": self.conversation.thread_id if self.conversation.stored else None,
            "turn_id": done.turn_id if done else None,
            "team": self.conversation.team.name,
            "stop_reason": done.stop_reason if done else None,
            "agents": list(done.agents) if done else [],
            "notices": self.notices,
            "earlier_messages_left_out": self.request.dropped,
            "trace": f"/chorus/trace/{done.turn_id}" if done and done.turn_id else None,
        }

    def chunk(self, delta: dict[str, Any], agent: str | None, finish: str | None = None) -> str:
        data = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], "agent": agent}
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    def completion(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "finish_reason": self.finish_reason(), "logprobs": None,
                             "message": {"role": "assistant", "content": "".join(self.text), "refusal": None}}],
                "usage": self.usage(), "agents": [m["agent"] for m in self.messages], "messages": self.messages,
                "chorus": self.extension()}


def turn_error(error: ErrorEvent, done: DoneEvent | None) -> ApiError:
    """A turn that ended in an error as the API's error: a refused message is the client's (4xx);
    a failure on the way (a model that kept failing) is 502."""
    if done is not None and done.stop_reason in ("rejected", "budget"):
        status = REJECTED.get(error.code, 400)
        headers = {}
        if error.code == "budget":
            midnight = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            headers["Retry-After"] = str(max(1, int((midnight - datetime.now(UTC)).total_seconds())))
        return ApiError(status, error.message, code=error.code, headers=headers,
                        type_="insufficient_quota" if error.code == "budget" else None)
    return ApiError(502, error.message, code=error.code)


async def answer(request: Request, key: ApiKey, chat: ChatRequest, conversation: Conversation,
                 events: AsyncGenerator[TurnEvent, None]) -> Response:
    """The turn's answer: a stream, or one completion once the turn is done."""
    reply = Reply(chat, conversation, MODEL_PREFIX + conversation.team.name)
    headers = {THREAD_HEADER: conversation.thread_id} if conversation.stored else {}
    # The first events tell whether the turn was refused (an empty or too long message, a spent
    # budget, a model that failed before a word): that is an HTTP error, not a stream.
    first: list[TurnEvent] = []
    async for event in events:
        first.append(event)
        if not isinstance(event, (NoticeEvent, ErrorEvent)):
            break
    errors = [e for e in first if isinstance(e, ErrorEvent)]
    if errors and isinstance(first[-1], DoneEvent):
        await _close(events)
        return turn_error(errors[0], first[-1]).response()
    if not chat.stream:
        async with contextlib.aclosing(events):
            async for event in _chain(first, events):
                reply.feed(event)
        if reply.error is not None:
            return turn_error(reply.error, reply.done).response()
        return JSONResponse(reply.completion(), headers=headers)

    async def sse() -> AsyncIterator[str]:
        async with contextlib.aclosing(events):  # a client that leaves stops the turn (as a stop would)
            yield reply.chunk({"role": "assistant", "content": ""}, None)
            async for event in _chain(first, events):
                piece = reply.feed(event)
                if piece is not None:
                    yield reply.chunk({"content": piece[1]}, piece[0])
        if reply.error is not None:  # the turn failed after it began: the SDK raises this
            yield turn_error(reply.error, reply.done).sse()
            yield "data: [DONE]\n\n"
            return
        final = {"id": reply.id, "object": "chat.completion.chunk", "created": reply.created, "model": reply.model,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason(), "logprobs": None}],
                 "agent": None, "chorus": reply.extension()}
        yield f"data: {json.dumps(final, ensure_ascii=False)}\n\n"
        if chat.include_usage:
            usage = {"id": reply.id, "object": "chat.completion.chunk", "created": reply.created,
                     "model": reply.model, "choices": [], "usage": reply.usage()}
            yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _chain(first: list[TurnEvent], rest: AsyncGenerator[TurnEvent, None]) -> AsyncGenerator[TurnEvent, None]:
    for event in first:
        yield event
    async for event in rest:
        yield event


async def _close(events: AsyncGenerator[TurnEvent, None]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
