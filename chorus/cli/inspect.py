"""``chorus plugins`` and ``chorus teams``: what loaded, and what failed and why."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from chorus.cli._common import _quiet_logging
from chorus.cli._root import app


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print the plugins as a JSON list.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Exit with status 1 if a plugin is in error or a CHORUS_PLUGINS entry matches none.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print each failure's traceback.")] = False,
) -> None:
    """List every plugin: which distribution it was loaded from, what it registers and whether it
    loaded (status ok/error with the reason). With --check, a deployment check: exit 1 on any problem."""
    _quiet_logging()
    logging.getLogger("chorus.plugins").setLevel(logging.CRITICAL)  # errors are shown below instead
    from chorus.plugins import load_plugins
    from chorus.settings import get_settings

    registry = load_plugins(get_settings())
    code = 1 if check and not registry.ok else 0
    if as_json:
        print(json.dumps([r.to_dict() for r in registry.reports], indent=2))
        for error in registry.errors:  # the list stays a list of plugins: the allow-list's own errors go here
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code)
    if not registry.reports:
        typer.echo("No plugins loaded (check CHORUS_PLUGINS).")
    for r in registry.reports:
        color = typer.colors.GREEN if r.status == "ok" else typer.colors.RED
        typer.secho(f"{r.name}  [{r.status}]", fg=color, bold=True, nl=False)
        typer.echo(f"  from {r.distribution} {r.version}{'  (built in)' if r.builtin else ''}")
        typer.echo(f"    module: {r.module}  (allow as {r.qualified_name})")
        if r.agents:
            typer.echo(f"    agents: {', '.join(r.agents)}")
        if r.tools:
            typer.echo(f"    tools:  {', '.join(r.tools)}")
        if r.teams:
            typer.echo(f"    teams:  {', '.join(r.teams)}")
        if r.team_types:
            typer.echo(f"    team types:  {', '.join(r.team_types)}")
        if r.error:
            typer.secho(f"    error:  {r.error}", fg=typer.colors.RED)
        if r.where:
            typer.secho(f"    at:     {r.where}", fg=typer.colors.RED)
        if verbose and r.traceback:
            typer.echo("    " + r.traceback.rstrip().replace("\n", "\n    "))
    for error in registry.errors:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    if check:
        problems = len(registry.problems) + len(registry.errors)
        typer.secho("check: all plugins loaded" if code == 0 else f"check failed: {problems} problem(s)",
                    fg=typer.colors.GREEN if code == 0 else typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def teams(
    as_json: Annotated[bool, typer.Option("--json", help="Print the teams as a JSON list.")] = False,
) -> None:
    """List the teams of this deployment (the agents/ folder), their members, and their MCP servers
    (each started to list its tools and state)."""
    _quiet_logging()
    import asyncio

    from chorus.mcp import ServerStatus
    from chorus.teams.build import resolve_members
    from chorus.turn import Chorus

    chorus = Chorus.load()

    async def servers() -> dict[str, list[ServerStatus]]:
        found: dict[str, list[ServerStatus]] = {}
        try:
            for spec in chorus.catalog.teams.values():
                await chorus.mcp.connect(spec)
                found[spec.name] = [s.status() for s in chorus.mcp.sources(spec)]
        finally:
            await chorus.mcp.close()
        return found

    statuses = asyncio.run(servers())
    if as_json:
        rows = []
        for spec in chorus.catalog.teams.values():
            members, problems = resolve_members(spec, chorus.registry)
            rows.append({"name": spec.name, "title": spec.title, "type": spec.type, "default": spec.default,
                         "members": [m.name for m in members], "problems": problems, "source": spec.source,
                         "mcp_servers": [{"name": s.name, "transport": s.transport, "state": s.state,
                                          "tools": list(s.tools), "error": s.error} for s in statuses[spec.name]]})
        print(json.dumps({"teams": rows, "errors": chorus.catalog.errors + chorus.mcp.errors}, indent=2))
        return
    for spec in chorus.catalog.teams.values():
        members, problems = resolve_members(spec, chorus.registry)
        default = "  (default)" if spec.default else ""
        typer.secho(f"{spec.name}{default}", bold=True)
        typer.echo(f"    {spec.title}: {spec.description or spec.type}")
        typer.echo(f"    {spec.type}; members: {', '.join(m.name for m in members) or '-'}")
        if spec.source:
            typer.echo(f"    from: {spec.source}")
        for server in statuses[spec.name]:
            color = typer.colors.GREEN if server.state == "ready" else typer.colors.RED
            typer.secho(f"    MCP server {server.name} ({server.transport}): {server.state}", fg=color)
            if server.tools:
                typer.echo(f"        tools: {', '.join(server.tools)}")
            if server.error:
                typer.secho(f"        {server.error}", fg=typer.colors.YELLOW)
        for problem in problems:
            typer.secho(f"    problem: {problem}", fg=typer.colors.YELLOW)
    for error in chorus.catalog.errors + chorus.mcp.errors:
        typer.secho(f"skipped: {error}", fg=typer.colors.RED)
