"""An MCP server's tools as AutoGen tools (:class:`McpTool`), and as the specs the offline model reads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from autogen_core import CancellationToken
from autogen_core.tools import BaseTool, ToolSchema
from pydantic import BaseModel, ConfigDict

from chorus.approvals import gated
from chorus.journal import journaled
from chorus.mcp.hub import McpCallError
from chorus.plugins import ToolSpec
from chorus.plugins._guards import guard_tool_result

if TYPE_CHECKING:
    from chorus.mcp.hub import McpSource

_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]")


def tool_name(server: str, tool: str) -> str:
    """What agents and models call a server's tool: ``<server>__<tool>`` (letters, digits, '_'; at most 64)."""
    return f"{server}__{_NOT_IN_NAME.sub('_', tool)}"[:64]


class _AnyArguments(BaseModel):
    """The server checks a call's arguments against its own schema; Chorus passes them on as they are."""

    model_config = ConfigDict(extra="allow")


class McpTool(BaseTool[_AnyArguments, Any]):
    """One tool of an MCP server, called through the process's connection to it (:class:`McpSource`)."""

    def __init__(self, source: McpSource, schema: ToolSchema) -> None:
        self.source = source
        self.tool = schema["name"]
        name = tool_name(source.name, self.tool)
        description = (schema.get("description") or self.tool).strip()
        super().__init__(_AnyArguments, str, name,  # type: ignore[arg-type]  # (AutoGen's bound is BaseModel)
                         f"{description} (from the MCP server {source.name!r})")
        self._tool_schema = ToolSchema(name=name, description=self._description,
                                       parameters=schema.get("parameters") or {"type": "object", "properties": {}})

    @property
    def schema(self) -> ToolSchema:
        return self._tool_schema

    async def run(self, args: _AnyArguments, cancellation_token: CancellationToken) -> Any:
        return await self._call(args.model_dump(), cancellation_token)

    async def run_json(self, args: Mapping[str, Any], cancellation_token: CancellationToken,
                       call_id: str | None = None) -> Any:
        return await self._call(dict(args), cancellation_token)

    async def _call(self, arguments: dict[str, Any], cancellation_token: CancellationToken) -> str:
        # In a background run, a call an earlier attempt finished is answered from the run's journal.
        async def run() -> str:
            return await self.source.call(self.tool, arguments, cancellation_token)

        async def call() -> str:  # a tool that needs approval waits for it (chorus.approvals)
            return str(await gated(self.name, arguments, run))

        try:
            result = str(await journaled(self.name, arguments, call))
        except McpCallError as exc:  # the server's own error text is untrusted too
            raise McpCallError(await guard_tool_result(self.name, str(exc))) from None
        return await guard_tool_result(self.name, result)

    def return_value_as_string(self, value: Any) -> str:
        return str(value)


def offline_spec(source: McpSource, schema: ToolSchema) -> ToolSpec:
    """What the offline model knows of the tool (its name, description and the keywords the server's
    entry gives it), so that it can call it from a user's words; it is never run itself."""

    def mcp_tool(**_: Any) -> str:
        raise RuntimeError("an MCP tool runs through its McpTool")

    keywords = tuple(source.spec.keywords.get(schema["name"], ()))
    return ToolSpec(func=mcp_tool, name=tool_name(source.name, schema["name"]),
                    description=(schema.get("description") or schema["name"]).strip(), keywords=keywords)


def tools_of(source: McpSource, taken: set[str] | None = None,
             problems: list[str] | None = None) -> tuple[list[McpTool], dict[str, ToolSpec]]:
    """The source's allowed tools (as last listed) and their specs for the offline model. A tool whose
    name is ``taken`` (another tool's, or the same after ``tool_name`` shortened it) is left out and
    reported in ``problems``: AutoGen refuses an agent with two tools of one name."""
    taken = set() if taken is None else taken
    tools: list[McpTool] = []
    specs: dict[str, ToolSpec] = {}
    for schema in source.schemas:
        tool = McpTool(source, schema)
        if tool.name in taken:
            if problems is not None:
                problems.append(f"MCP server {source.name!r}: its tool {schema['name']!r} is called {tool.name!r} "
                                "like another tool, and was left out")
            continue
        taken.add(tool.name)
        tools.append(tool)
        specs[tool.name] = offline_spec(source, schema)
    return tools, specs
