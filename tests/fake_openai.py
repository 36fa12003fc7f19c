"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for tests.

It speaks just enough of the protocol for litellm's ``openai/<model>`` provider
(and the ``openai`` SDK underneath it): ``POST /v1/chat/completions``, streamed
as server-sent events (``data: {...}`` chunks, then ``data: [DONE]``) or as one
JSON body, plus ``GET /v1/models``. Responses are scripted by the test, in
order; every request is recorded so the test can check what was sent::

    with FakeOpenAI() as server:
        server.queue_text("Hello there")
        server.queue_tool_call("add", {"a": 1, "b": 2})
        server.queue_error(500, "boom")
        server.queue_hang()                      # accepts the request, never answers
        server.queue_text("one two", stall_after=1)  # streams "one", then goes silent
        client = ChorusModelClient("openai/fake-model", api_base=server.url, api_key="sk-test")
        ...
        assert server.requests[0]["messages"][-1]["content"] == "hi"

Only the standard library is used (``http.server`` in a background thread),
so the server works from sync and async tests alike and never touches
anything but the loopback interface.
"""

from __future__ import annotations

import json
import re
import select
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["FakeOpenAI", "FakeResponse", "FakeToolCall", "NetworkBlocked", "loopback_only", "split_text"]

_WORDS = re.compile(r"\s*\S+|\s+")


def split_text(text: str, pieces: int | None = None) -> list[str]:
    """Split ``text`` into chunks that join back to exactly ``text``.

    With ``pieces`` unset, one chunk per word (leading space kept, like a
    tokenizer); else ``pieces`` chunks of roughly equal length.
    """
    if pieces is None:
        return _WORDS.findall(text) or [text]
    pieces = max(1, min(pieces, len(text) or 1))
    size, extra = divmod(len(text), pieces)
    out, start = [], 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


@dataclass(frozen=True)
class FakeToolCall:
    """One tool call the fake model makes; ``arguments`` is streamed in ``pieces`` parts."""

    name: str
    arguments: str | Mapping[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")
    pieces: int = 3

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments))


@dataclass
class FakeResponse:
    """One scripted answer.

    ``status`` other than 200 answers with an OpenAI-style error body. For a
    200, the stream carries ``text_chunks`` then ``tool_calls``; the server
    waits ``first_delay`` seconds before answering and ``chunk_delay`` seconds
    before every chunk after the first content chunk (so a test can receive
    one chunk, then find the server slow). ``stream_error`` sends an error event (which the
    ``openai`` SDK raises) after ``stream_error_after`` chunks instead of
    finishing. ``usage`` is ``(prompt_tokens, completion_tokens)``; when None
    the server counts words.

    A misbehaving provider: ``hang`` accepts the request and never answers (no status line, no
    headers) until the client hangs up or the server closes; ``stall_after`` streams that many
    text chunks (after the role chunk) and then goes silent, the connection held open.
    """

    text_chunks: list[str] = field(default_factory=list)
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None
    status: int = 200
    error_message: str = ""
    error_type: str = "server_error"
    error_code: str | None = None
    first_delay: float = 0.0
    chunk_delay: float = 0.0
    stream_error: str | None = None
    stream_error_after: int = 0
    hang: bool = False
    stall_after: int | None = None

    @property
    def text(self) -> str:
        return "".join(self.text_chunks)

    @property
    def finish(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client hung up (a cancelled stream, a closed keep-alive connection)
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean

    # -- routing ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            fake = self.server.fake
            self._send_json(200, {"object": "list", "data": [{"id": fake.model, "object": "model",
                                                              "created": 0, "owned_by": "fake"}]})
        else:
            self._send_error(404, f"no route for GET {self.path}", "invalid_request_error")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_error(400, "request body is not JSON", "invalid_request_error")
            return
        if self.path.split("?")[0].rstrip("/").endswith("/embeddings"):
            fake = self.server.fake
            with fake._lock:
                fake.paths.append(self.path)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                fake.requests.append(body)
            self._send_json(200, embeddings(body))
            return
        if not self.path.split("?")[0].rstrip("/").endswith("/chat/completions"):
            self._send_error(404, f"no route for POST {self.path}", "invalid_request_error")
            return
        fake = self.server.fake
        response = fake._record_and_pop(self.path, dict(self.headers.items()), body)
        if response is None:
            self._send_error(500, "fake OpenAI server: no response queued for this request", "server_error")
            return
        if response.hang:
            self.close_connection = True  # not waiting for another request on this socket afterwards
            fake._sleep(float("inf"), self.connection)
            return
        if response.status != 200:
            self._send_error(response.status, response.error_message or f"fake error {response.status}",
                             response.error_type, response.error_code)
            return
        if not fake._sleep(response.first_delay, self.connection):
            return
        if body.get("stream"):
            self._stream(body, response)
        else:
            self._send_json(200, fake._completion(body, response))

    # -- writing ----------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, message: str, type_: str, code: str | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": type_, "param": None, "code": code}})

    def _stream(self, body: dict[str, Any], response: FakeResponse) -> None:
        fake = self.server.fake
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        try:
            for index, event in enumerate(fake._events(body, response, include_usage)):
                if response.stall_after is not None and index > response.stall_after:
                    self.close_connection = True
                    fake._sleep(float("inf"), self.connection)  # silent, the response left unfinished
                    return
                # The role chunk and the first content chunk go out at once; then chunk_delay.
                if index >= 2 and event is not _DONE and not fake._sleep(response.chunk_delay, self.connection):
                    return
                line = "data: [DONE]" if event is _DONE else "data: " + json.dumps(event)
                self._write_chunk(f"{line}\n\n".encode())
            self._write_chunk(b"")  # end of the chunked body
        except (BrokenPipeError, ConnectionResetError):
            fake._note_disconnect()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


_DONE = object()


class FakeOpenAI:
    """A scripted OpenAI-compatible server on ``127.0.0.1`` and an ephemeral port.

    Use it as a context manager (or call :meth:`start` / :meth:`close`).
    ``url`` is the API base to hand to litellm (``.../v1``). Queue responses
    with :meth:`queue_text`, :meth:`queue_tool_call`, :meth:`queue_tool_calls`,
    :meth:`queue_error`, :meth:`queue_hang` or :meth:`queue`; when the queue is empty the server
    answers ``default`` if set, else HTTP 500. ``requests`` holds the JSON body
    of every chat-completions request, ``headers`` their headers (lower-case
    keys), ``disconnects`` counts streams the client closed early.
    """

    def __init__(self, model: str = "fake-model", *, default: FakeResponse | None = None) -> None:
        self.model = model
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.disconnects = 0
        self._queue: deque[FakeResponse] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._disconnected = threading.Condition(self._lock)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._closing.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._httpd is None:
            return
        self._closing.set()  # wakes handlers sleeping in a slow stream
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake OpenAI server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The API base, e.g. ``http://127.0.0.1:54321/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting --------------------------------------------------------------------------

    def queue(self, *responses: FakeResponse) -> FakeOpenAI:
        with self._lock:
            self._queue.extend(responses)
        return self

    def queue_text(
        self,
        text: str,
        *,
        chunks: int | Sequence[str] | None = None,
        usage: tuple[int, int] | None = None,
        finish_reason: str | None = None,
        first_delay: float = 0.0,
        chunk_delay: float = 0.0,
        stream_error: str | None = None,
        stream_error_after: int = 0,
        stall_after: int | None = None,
    ) -> FakeOpenAI:
        """Answer ``text``, streamed one word per chunk (or in ``chunks`` pieces, or as given).

        ``stall_after``: send only that many chunks of it, then go silent with the stream open.
        """
        if isinstance(chunks, int) or chunks is None:
            pieces = split_text(text, chunks)
        else:
            pieces = list(chunks)
            if "".join(pieces) != text:
                raise ValueError("chunks must join to text")
        return self.queue(FakeResponse(text_chunks=pieces, usage=usage, finish_reason=finish_reason,
                                       first_delay=first_delay, chunk_delay=chunk_delay,
                                       stream_error=stream_error, stream_error_after=stream_error_after,
                                       stall_after=stall_after))

    def queue_hang(self, count: int = 1) -> FakeOpenAI:
        """Accept the next ``count`` requests and never answer them (a hanging provider)."""
        return self.queue(*(FakeResponse(hang=True) for _ in range(count)))

    def queue_tool_call(self, name: str, arguments: str | Mapping[str, Any], *, id: str | None = None,
                        pieces: int = 3, text: str = "", usage: tuple[int, int] | None = None) -> FakeOpenAI:
        """Answer with one tool call whose arguments JSON is streamed in ``pieces`` parts."""
        call = FakeToolCall(name, arguments, pieces=pieces) if id is None else FakeToolCall(
            name, arguments, id=id, pieces=pieces)
        return self.queue_tool_calls([call], text=text, usage=usage)

    def queue_tool_calls(self, calls: Sequence[FakeToolCall], *, text: str = "",
                         usage: tuple[int, int] | None = None) -> FakeOpenAI:
        """Answer with several tool calls (optionally after some text)."""
        return self.queue(FakeResponse(text_chunks=split_text(text) if text else [], tool_calls=list(calls),
                                       usage=usage))

    def queue_error(self, status: int, message: str = "", *, type: str | None = None,
                    code: str | None = None) -> FakeOpenAI:
        """Answer with HTTP ``status`` and an OpenAI-style error body."""
        default_type = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                        404: "invalid_request_error", 429: "rate_limit_error"}.get(status, "server_error")
        default_code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return self.queue(FakeResponse(status=status, error_message=message or f"fake error {status}",
                                       error_type=type or default_type, error_code=code or default_code))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def last_request(self) -> dict[str, Any]:
        with self._lock:
            if not self.requests:
                raise AssertionError("the fake OpenAI server received no request")
            return self.requests[-1]

    def reset(self) -> None:
        """Forget queued responses and recorded requests."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.headers.clear()
            self.paths.clear()
            self.disconnects = 0

    def wait_for_disconnect(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until ``count`` streams were closed early by the client; False on timeout."""
        with self._disconnected:
            return self._disconnected.wait_for(lambda: self.disconnects >= count, timeout=timeout)

    # -- used by the handler ----------------------------------------------------------------

    def _record_and_pop(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> FakeResponse | None:
        with self._lock:
            self.paths.append(path)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            self.requests.append(body)
            if self._queue:
                return self._queue.popleft()
            return self.default

    def _note_disconnect(self) -> None:
        with self._disconnected:
            self.disconnects += 1
            self._disconnected.notify_all()

    def _sleep(self, seconds: float, conn: socket.socket) -> bool:
        """Wait ``seconds``; False (stop answering) if the client hung up or the server is closing.

        A hang-up is noticed while waiting, not only at the next write, so a test
        can check that a cancelled client really closed its stream.
        """
        if seconds <= 0:
            return True
        deadline = time.monotonic() + seconds
        while not self._closing.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            readable, _, _ = select.select([conn], [], [], min(left, 0.02))
            if readable:
                try:
                    hung_up = conn.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    hung_up = True
                if hung_up:
                    self._note_disconnect()
                    return False
                time.sleep(min(left, 0.02))  # pipelined bytes: not a hang-up, keep waiting
        return False

    @staticmethod
    def _count_words(body: dict[str, Any]) -> int:
        total = 0
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            total += len(str(content or "").split()) + 3
        return total

    def _usage(self, body: dict[str, Any], response: FakeResponse) -> dict[str, int]:
        if response.usage is not None:
            prompt, completion = response.usage
        else:
            prompt = self._count_words(body)
            completion = len(response.text.split()) + len(response.tool_calls)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _events(self, body: dict[str, Any], response: FakeResponse, include_usage: bool) -> Iterator[Any]:
        ident = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        created = int(time.time())
        model = body.get("model") or self.model

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            payload: dict[str, Any] = {
                "id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                payload["usage"] = None
            return payload

        sent = 0

        def maybe_fail() -> Iterator[Any]:
            if response.stream_error is not None and sent >= response.stream_error_after:
                yield {"error": {"message": response.stream_error, "type": "server_error", "param": None,
                                 "code": None}}
                raise _StopStream

        try:
            yield from maybe_fail()
            yield chunk({"role": "assistant", "content": ""})
            for piece in response.text_chunks:
                yield chunk({"content": piece})
                sent += 1
                yield from maybe_fail()
            for index, call in enumerate(response.tool_calls):
                args = call.arguments_json
                parts = split_text(args, call.pieces) if args else [""]
                yield chunk({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]})
                for part in parts:
                    yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
                sent += 1
                yield from maybe_fail()
            yield chunk({}, response.finish)
            if include_usage:
                yield {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                       "system_fingerprint": "fp_fake", "choices": [], "usage": self._usage(body, response)}
            yield _DONE
        except _StopStream:
            yield _DONE

    def _completion(self, body: dict[str, Any], response: FakeResponse) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": response.text or None}
        if response.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
                for c in response.tool_calls
            ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model") or self.model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": response.finish}],
            "usage": self._usage(body, response),
        }


class _StopStream(Exception):
    pass


# -- a guard against leaving the machine ----------------------------------------------------


class NetworkBlocked(ConnectionRefusedError):
    """A test tried to reach a host other than the loopback interface."""


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/embeddings``: a deterministic 8-dimensional vector per input (letter statistics)."""
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else list(texts or [])
    data = []
    for index, text in enumerate(texts):
        low = str(text).lower()
        vector = [float(sum(low.count(c) for c in group)) + 0.1 for group in
                  ("ae", "io", "u", "rst", "lnm", "pbd", "kgc", " ")]
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(str(t).split()) for t in texts)
    return {"object": "list", "data": data, "model": body.get("model", "fake-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _is_loopback_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]")
    if host in ("localhost", "localhost.", ""):
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@contextmanager
def loopback_only() -> Iterator[list[str]]:
    """Refuse name lookups and connections to anything but loopback while active.

    Yields the list of refused attempts (``"getaddrinfo host"`` / ``"connect
    host:port"``), so a test can also assert that nothing even tried. Unix
    sockets are allowed. Patches the ``socket`` module process-wide: threads
    (asyncio's resolver executor included) are covered too.
    """
    blocked: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback_host(host):
            blocked.append(f"getaddrinfo {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"network access to {host!r} is blocked in tests")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback_host(address[0]):
            blocked.append(f"connect {address[0]}:{address[1]}")
            raise NetworkBlocked(f"network access to {address[0]!r} is blocked in tests")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    try:
        yield blocked
    finally:
        socket.getaddrinfo = real_getaddrinfo  # type: ignore[assignment]
        socket.socket.connect = real_connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign,assignment]
