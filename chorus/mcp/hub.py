"""One process's connections to MCP servers: started once, shared by every conversation, started
again after a crash (:class:`McpHub`, :class:`McpSource`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chorus.teams.spec import McpServerSpec, TeamSpec, load_mcp_servers

if TYPE_CHECKING:
    from autogen_core import CancellationToken
    from autogen_core.tools import ToolSchema
    from autogen_ext.tools.mcp import McpWorkbench

    from chorus.settings import Settings

log = logging.getLogger(__name__)

_CONNECTION_LOST = {"", "Connection closed"}
"""What a call's error says when the server went away during it (the ``mcp`` SDK's words)."""

RETRY_START_AFTER_S = 5.0
"""After a failed start, calls are refused for this long before the server is started again; the
wait doubles with each failure in a row, up to :data:`RETRY_START_AT_MOST_S`."""
RETRY_START_AT_MOST_S = 300.0


class McpCallError(RuntimeError):
    """A call to an MCP server's tool that did not give a result; the message is for the agent."""


@dataclass(frozen=True)
class ServerStatus:
    """What ``chorus teams`` and ``/readyz`` show of a server."""

    name: str
    transport: str
    state: str  # "not started", "starting", "ready", "failed"
    tools: tuple[str, ...]
    error: str | None = None
    calls: int = 0
    failures: int = 0


def _describe(exc: BaseException) -> str:
    """An exception (or a group of them, as anyio raises) as one line."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


@dataclass
class McpSource:
    """One MCP server, as one process reaches it: its connection (an AutoGen ``McpWorkbench``), the
    tools it listed, and its state."""

    name: str
    spec: McpServerSpec
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    schemas: list[ToolSchema] = field(default_factory=list)
    """The allowed tools as the server last listed them: kept while it is down, so the team's tools
    stay the same and a call says the server is down."""
    state: str = "not started"
    error: str | None = None
    calls: int = 0
    failures: int = 0
    _workbench: McpWorkbench | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _lock: asyncio.Lock | None = field(default=None, repr=False)
    _lock_loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _start_failed_at: float | None = field(default=None, repr=False)
    _failed_starts: int = field(default=0, repr=False)

    def status(self) -> ServerStatus:
        return ServerStatus(name=self.name, transport=self.spec.transport, state=self.state,
                            tools=tuple(s["name"] for s in self.schemas), error=self.error, calls=self.calls,
                            failures=self.failures)

    def _params(self) -> Any:
        from autogen_ext.tools.mcp import StdioServerParams, StreamableHttpServerParams

        env, headers = self.spec.expanded(self.environ)
        # The session's own read timeout covers its start too; a call's is ``timeout``, kept by call().
        longest = max(self.spec.timeout, self.spec.start_timeout)
        if self.spec.command is not None:
            command = sys.executable if self.spec.command == "python" else self.spec.command
            return StdioServerParams(command=command, args=list(self.spec.args), env=env or None,
                                     cwd=self.spec.cwd, read_timeout_seconds=longest)
        return StreamableHttpServerParams(url=str(self.spec.url), headers=headers or None,
                                          timeout=min(longest, 30.0), sse_read_timeout=longest)

    def alive(self) -> bool:
        """Connected, in this event loop, with its session still running."""
        workbench = self._workbench
        if workbench is None or self._loop is not asyncio.get_running_loop():
            return False
        actor = getattr(workbench, "_actor", None)  # AutoGen 0.7's session actor: gone or inactive once it died
        task = getattr(actor, "_actor_task", None)
        return actor is not None and bool(getattr(actor, "_active", False)) and (task is None or not task.done())

    def _lock_here(self) -> asyncio.Lock:
        """One lock per event loop: two conversations opening at once start the server once."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def cooling_down(self) -> bool:
        """Whether the last start failed too recently to try again."""
        if self.state != "failed" or self._start_failed_at is None:
            return False
        wait = min(RETRY_START_AT_MOST_S, RETRY_START_AFTER_S * float(2 ** max(0, self._failed_starts - 1)))
        return time.monotonic() - self._start_failed_at < wait

    async def start(self) -> bool:
        """Connect and list the tools, unless connected already; False (and ``error``) when it fails."""
        async with self._lock_here():
            if self.alive():
                return True
            if self.cooling_down():  # (another conversation's start just failed)
                return False
            await self._drop()
            from autogen_ext.tools.mcp import McpWorkbench

            self.state, self.error = "starting", None
            try:
                workbench = McpWorkbench(self._params())
            except Exception as exc:  # a missing ${VAR}, bad parameters
                return self._start_failed(_describe(exc))
            loop = asyncio.get_running_loop()
            try:
                listed = await asyncio.wait_for(self._connect(workbench), self.spec.start_timeout)
            except Exception as exc:
                await _stop_quietly(workbench)
                reason = (f"did not start within {self.spec.start_timeout:g} s" if isinstance(exc, TimeoutError)
                          else _describe(exc))
                return self._start_failed(reason)
            self._workbench, self._loop = workbench, loop
            allowed = self.spec.tools
            missing = sorted(set(allowed or ()) - {s["name"] for s in listed})
            self.schemas = [s for s in listed if allowed is None or s["name"] in allowed]
            self.state, self._start_failed_at, self._failed_starts = "ready", None, 0
            if missing:
                self.error = f"not offered by the server: {', '.join(missing)}"
                log.warning("MCP server %r does not offer the allowed tools %s", self.name, missing)
            log.info("MCP server %r (%s) is ready with %d tools", self.name, self.spec.transport, len(self.schemas))
            return True

    @staticmethod
    async def _connect(workbench: McpWorkbench) -> list[ToolSchema]:
        await workbench.start()
        return list(await workbench.list_tools())

    def _start_failed(self, reason: str) -> bool:
        self.state, self.error = "failed", f"failed to start: {reason}"
        self._start_failed_at = time.monotonic()
        self._failed_starts += 1
        log.error("MCP server %r %s; its tools are unavailable until it starts", self.name, self.error)
        return False

    async def call(self, tool: str, arguments: Mapping[str, Any], cancellation: CancellationToken | None = None) -> str:
        """The text of ``tool``'s result; McpCallError (for the agent to read) when there is none."""
        from autogen_core.tools import TextResultContent

        self.calls += 1
        if not self.alive() and not await self.start():
            self.failures += 1
            raise McpCallError(f"the MCP server {self.name!r} is not running ({self.error})")
        workbench = self._workbench
        assert workbench is not None
        try:
            result = await asyncio.wait_for(workbench.call_tool(tool, dict(arguments), cancellation),
                                            self.spec.timeout)
        except TimeoutError:
            self.failures += 1
            self._lost(f"did not answer a call to {tool} within {self.spec.timeout:g} s")
            raise McpCallError(f"the MCP server {self.name!r} did not answer within {self.spec.timeout:g} s; "
                               "the call was given up") from None
        parts = [p.content if isinstance(p, TextResultContent) else "[an image]" for p in result.result]
        text = "\n".join(parts).strip()
        if result.is_error:
            self.failures += 1
            if not self.alive() or text in _CONNECTION_LOST:  # (the session may not have wound down yet)
                self._lost(f"stopped during a call to {tool} ({text or 'connection closed'})")
                raise McpCallError(f"the MCP server {self.name!r} stopped while running {tool}; "
                                   "it is started again for the next call")
            raise McpCallError(text or f"{tool} failed")
        return text

    def _lost(self, reason: str) -> None:
        """The connection died or hung: report it, and drop it so that the next call starts it again."""
        self.state, self.error = "failed", reason
        log.error("MCP server %r %s", self.name, reason)
        workbench, self._workbench = self._workbench, None
        if workbench is not None:
            task = asyncio.ensure_future(_stop_quietly(workbench))
            _background.add(task)
            task.add_done_callback(_background.discard)

    async def _drop(self) -> None:
        workbench, self._workbench = self._workbench, None
        if workbench is not None and self._loop is asyncio.get_running_loop():
            await _stop_quietly(workbench)

    async def close(self) -> None:
        await self._drop()
        if self.state != "failed":
            self.state = "not started"


_background: set[asyncio.Task[None]] = set()


async def _stop_quietly(workbench: McpWorkbench) -> None:
    """Stop a connection, whatever state it is in (a dead server's stop may fail or hang)."""
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(workbench.stop(), 5.0)


class McpHub:
    """Every MCP server this process's teams use, each connected once (:class:`McpSource`)."""

    def __init__(self, shared: Mapping[str, McpServerSpec] | None = None, *, errors: Iterable[str] = ()) -> None:
        self.shared: dict[str, McpServerSpec] = dict(shared or {})
        """Servers for every team (``CHORUS_MCP_SERVERS``)."""
        self.errors: list[str] = list(errors)
        self._sources: dict[tuple[str, str], McpSource] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> McpHub:
        if settings.mcp_servers is None:
            return cls()
        try:
            return cls(load_mcp_servers(settings.mcp_servers))
        except ValueError as exc:
            log.error("CHORUS_MCP_SERVERS: %s", exc)
            return cls(errors=[f"CHORUS_MCP_SERVERS: {exc}"])

    def servers(self, team: TeamSpec) -> dict[str, McpServerSpec]:
        """The team's servers: every team's, then its own (which win on a name both use)."""
        return {**self.shared, **team.mcp_servers}

    def source(self, name: str, spec: McpServerSpec) -> McpSource:
        """The connection for this server (one per name and configuration)."""
        key = (name, json.dumps(spec.model_dump(mode="json"), sort_keys=True))
        found = self._sources.get(key)
        if found is None:
            found = self._sources[key] = McpSource(name, spec)
        return found

    def sources(self, team: TeamSpec) -> list[McpSource]:
        return [self.source(name, spec) for name, spec in self.servers(team).items()]

    async def connect(self, team: TeamSpec) -> None:
        """Start the team's servers that are not running (together); failures are recorded, not raised."""
        waiting = [s for s in self.sources(team) if not s.alive() and not s.cooling_down()]
        if waiting:
            await asyncio.gather(*(s.start() for s in waiting))

    def problems(self, team: TeamSpec | None = None) -> list[str]:
        """One line per server that is not working (of ``team``, or of every team connected so far)."""
        sources = self.sources(team) if team is not None else list(self._sources.values())
        lines = list(self.errors)
        lines += [f"MCP server {s.name!r}: {s.error}" for s in sources if s.state == "failed" and s.error]
        return lines

    async def close(self) -> None:
        """Stop every connection (stdio servers' processes end with it)."""
        await asyncio.gather(*(source.close() for source in list(self._sources.values())))
