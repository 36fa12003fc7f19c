"""An OpenAI-compatible chat-completions provider for benchmarks, in a process of its own.

    python bench/provider.py [--port 0] [--words 50] [--pace 0]

It prints ``http://127.0.0.1:PORT/v1`` on its first line once it listens. Every
``POST /v1/chat/completions`` answers with the same reply of ``--words`` words, streamed as
server-sent events one word per chunk (``data: {...}``, a final chunk with ``finish_reason``, a
usage chunk when ``stream_options.include_usage`` is set, then ``data: [DONE]``) or as one JSON
body when ``stream`` is false. ``--pace`` paces each stream at that many chunks per second (0 =
as fast as the socket takes them), like a real provider's decoding speed; ``--first-chunk-ms``
waits that long before the first chunk (a provider's time to first token).

It is written on bare ``asyncio`` streams with HTTP/1.1 keep-alive so that serving hundreds of
streams at once costs little CPU: on a 2-core machine the provider shares the cores with the
server under test, and it must not be what limits the figures. ``GET /v1/stats`` returns how
many completions it served, how many chunks it sent, and, for every chat that put a marker
``[chat ID]`` in its messages, when (``time.time()``, this machine's clock) the first chunk of
that chat's first completion was written to the socket: ``{"first_chunks": {ID: seconds}}``; the
benchmark subtracts it from the time its client saw the chat's first token. ``POST /v1/bench``
with ``{"pace": 50}`` changes the pace between rounds and resets every count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid

MARKER = re.compile(r"\[chat ([0-9a-zA-Z-]{1,64})\]")


def reply_text(words: int) -> str:
    """The benchmark's reply: ``words`` words, the same on every server that is measured."""
    vocabulary = ("streaming tokens reach every open chat quickly while the team keeps answering "
                  "questions about music plugins memory traces and costs").split()
    return " ".join(vocabulary[i % len(vocabulary)] + ("." if i % 12 == 11 else "") for i in range(words))


class Provider:
    def __init__(self, words: int, pace: float, first_chunk_ms: float) -> None:
        self.reply = reply_text(words)
        self.pieces = [w + " " for w in self.reply.split(" ")]
        self.pieces[-1] = self.pieces[-1].rstrip(" ")
        self.pace = pace
        self.first_chunk_s = first_chunk_ms / 1000
        self.reset()

    def reset(self) -> None:
        self.completions = 0
        self.chunks = 0
        self.streams_open = 0
        self.first_chunks: dict[str, float] = {}  # chat marker -> when its first chunk went out

    def stats(self) -> dict[str, object]:
        return {"completions": self.completions, "chunks": self.chunks, "streams_open": self.streams_open,
                "pace": self.pace, "first_chunks": self.first_chunks}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in
                           (line.split(":", 1) for line in lines[1:] if ":" in line)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                    await self.complete(json.loads(body or b"{}"), writer)
                elif method == "GET" and path.endswith("/models"):
                    self.json(writer, {"object": "list", "data": [{"id": "bench", "object": "model"}]})
                elif method == "GET" and path.endswith("/stats"):
                    self.json(writer, self.stats())
                elif method == "POST" and path.endswith("/bench"):
                    settings = json.loads(body or b"{}")
                    self.pace = float(settings.get("pace", self.pace))
                    self.reset()
                    self.json(writer, self.stats())
                else:
                    self.json(writer, {"error": {"message": "not found"}}, status="404 Not Found")
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @staticmethod
    def json(writer: asyncio.StreamWriter, payload: object, status: str = "200 OK") -> None:
        data = json.dumps(payload).encode()
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                     f"\r\n".encode() + data)

    @staticmethod
    def marker(request: dict) -> str | None:
        """The chat's marker, from the latest message that has one (the user's question; a later
        agent's request carries the earlier agents' replies after it, which have none)."""
        for message in reversed(request.get("messages") or []):
            content = message.get("content")
            if not isinstance(content, str):  # a list of parts
                content = " ".join(str(part.get("text", "")) for part in content or [] if isinstance(part, dict))
            found = MARKER.findall(content)
            if found:
                return str(found[-1])
        return None

    async def complete(self, request: dict, writer: asyncio.StreamWriter) -> None:
        self.completions += 1
        chat = self.marker(request)
        model = request.get("model", "bench")
        created = int(time.time())
        ident = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in request.get("messages", []))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(self.pieces),
                 "total_tokens": prompt_tokens + len(self.pieces)}
        if self.first_chunk_s:
            await asyncio.sleep(self.first_chunk_s)
        if not request.get("stream"):
            self.json(writer, {"id": ident, "object": "chat.completion", "created": created, "model": model,
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": self.reply}}],
                               "usage": usage})
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        head = f'{{"id":"{ident}","object":"chat.completion.chunk","created":{created},"model":{json.dumps(model)},'

        def event(rest: str) -> None:
            data = f"data: {head}{rest}}}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))

        self.streams_open += 1
        try:
            interval = 1 / self.pace if self.pace else 0.0
            start = time.monotonic()
            for i, piece in enumerate(self.pieces):
                delta = {"content": piece} if i else {"role": "assistant", "content": piece}
                event(f'"choices":[{{"index":0,"delta":{json.dumps(delta)},"finish_reason":null}}]')
                self.chunks += 1
                if not i and chat is not None and chat not in self.first_chunks:
                    await writer.drain()  # on the socket, not just in our buffer
                    self.first_chunks[chat] = time.time()
                if interval:
                    await asyncio.sleep(max(0.0, start + (i + 1) * interval - time.monotonic()))
                await writer.drain()
            event('"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]')
            if (request.get("stream_options") or {}).get("include_usage"):
                event(f'"choices":[],"usage":{json.dumps(usage)}')
            done = b"data: [DONE]\n\n"
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        finally:
            self.streams_open -= 1


async def serve(port: int, provider: Provider) -> None:
    server = await asyncio.start_server(provider.handle, "127.0.0.1", port, backlog=4096)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--pace", type=float, default=0.0, help="chunks per second per stream (0 = instant)")
    parser.add_argument("--first-chunk-ms", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, Provider(args.words, args.pace, args.first_chunk_ms)))


if __name__ == "__main__":
    main()
