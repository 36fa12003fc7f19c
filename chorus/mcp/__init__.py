"""MCP servers as tool sources (README, "Tools from MCP servers").

A team file's ``mcp_servers`` (and the file ``CHORUS_MCP_SERVERS`` names, for every team) list MCP
servers, over stdio or streamable HTTP. :class:`McpHub` (one per process, on :class:`Chorus`)
connects to each through AutoGen's ``McpWorkbench``, lists its tools once, and keeps the
connection for every conversation; :mod:`chorus.mcp.tools` makes each of those tools an AutoGen
tool called ``<server>__<tool>``. A server that fails to start, stops, or does not answer in time
is reported (``chorus teams``, the log, the page's notice of problems) and the team keeps its
other tools; the next call starts it again.
"""

from chorus.mcp.hub import McpHub, McpSource, ServerStatus
from chorus.mcp.tools import McpTool, tool_name

__all__ = ["McpHub", "McpSource", "McpTool", "ServerStatus", "tool_name"]
