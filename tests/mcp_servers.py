"""A real MCP server for the tests, written with the ``mcp`` SDK.

``python tests/mcp_servers.py stdio`` serves it over stdio; ``python tests/mcp_servers.py http PORT``
over streamable HTTP at ``http://127.0.0.1:PORT/mcp``. Its tools: ``add``, ``shout``, ``whoami``
(the Authorization header the HTTP server received), ``crash`` (the process exits in the middle
of the call), ``slow`` (answers after a while) and ``secret_note`` (one the allow-list leaves out).
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.fastmcp import Context, FastMCP

server = FastMCP("testing", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two whole numbers."""
    return f"{a} + {b} = {a + b} (pid {os.getpid()})"


@server.tool()
def shout(text: str) -> str:
    """Repeat the text in capitals."""
    return text.upper() + "!"


@server.tool()
def whoami(ctx: Context) -> str:  # type: ignore[type-arg]
    """Say which credentials the server received, and its environment's greeting."""
    request = getattr(ctx.request_context, "request", None)
    header = request.headers.get("authorization", "none") if request is not None else "none"
    return f"authorization: {header}; greeting: {os.environ.get('GREETING', 'none')}"


@server.tool()
def crash() -> str:
    """Stop the server in the middle of the call."""
    sys.stderr.flush()
    os._exit(3)


@server.tool()
async def slow(seconds: float) -> str:
    """Answer after ``seconds``."""
    await asyncio.sleep(seconds)
    return f"done after {seconds} s"


@server.tool()
def secret_note() -> str:
    """A tool the teams' allow-lists leave out."""
    return "this should never be called"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.settings.host = "127.0.0.1"
        server.settings.port = int(sys.argv[2])
        server.run("streamable-http")
    else:
        server.run("stdio")
