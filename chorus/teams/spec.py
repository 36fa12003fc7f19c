"""Team definitions as data: YAML files under ``agents/`` (``CHORUS_AGENTS_DIR``).

One file per team; see ``agents/README.md`` for every field. A file that does
not parse or validate is reported and skipped, never fatal.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

log = logging.getLogger(__name__)

BUILT_IN_TEAM_TYPES = ("selector", "round_robin", "sequential", "iterative", "swarm", "graph")
"""The team types Chorus brings (:mod:`chorus.teams.registry`); plugins add more by hook."""

_TEAM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class Starter(BaseModel):
    """A suggested first message shown on an empty chat."""

    model_config = ConfigDict(extra="forbid")
    label: str
    message: str


class AgentOverride(BaseModel):
    """Per-team changes to an agent, or a whole agent declared in YAML alone."""

    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    system_message: str | None = None
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    tools: list[str] | None = None
    keywords: list[str] = Field(default_factory=list)


class Termination(BaseModel):
    """When a turn ends. Either condition stops it; ``max_messages`` counts the user's message."""

    model_config = ConfigDict(extra="forbid")
    max_messages: int | None = Field(default=None, ge=2, le=100)
    text_mention: str | None = None


class GraphEdge(BaseModel):
    """``type: graph``: an edge from one member to others; ``when`` makes it conditional."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: str = Field(alias="from")
    to: list[str]
    when: str | None = None
    """Taken only when the source's message contains this text (case-sensitive)."""
    activation: Literal["all", "any"] = "all"
    """How a target with several incoming edges waits: for ``all`` of them (a join) or ``any``."""

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_more(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


_SERVER_NAME = re.compile(r"^[a-z](?:[a-z0-9]|_(?!_)){0,30}$")  # no "__": it separates server and tool
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class McpServerSpec(BaseModel):
    """An MCP server whose tools join a team (``mcp_servers:`` in a team file, or the file that
    ``CHORUS_MCP_SERVERS`` names for every team): a command over stdio, or a URL over streamable
    HTTP. ``${NAME}`` in ``env`` and ``headers`` values is read from Chorus's environment, so a
    token never has to be written in the file."""

    model_config = ConfigDict(extra="forbid")
    command: str | None = None
    """stdio: the program to start (``python`` is the Python that runs Chorus)."""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    """stdio: environment variables for the server, on top of PATH, HOME and the like."""
    cwd: str | None = None
    url: str | None = None
    """streamable HTTP: the server's endpoint, such as ``http://127.0.0.1:8000/mcp``."""
    headers: dict[str, str] = Field(default_factory=dict)
    tools: list[str] | None = None
    """The allow-list: only these of the server's tools join the team (unset: all of them)."""
    agents: list[str] | None = None
    """The members that get the server's tools (unset: every member)."""
    timeout: float = Field(default=30.0, gt=0, le=3600)
    """Seconds one tool call may take; then the agent is told the call timed out."""
    start_timeout: float = Field(default=20.0, gt=0, le=600)
    """Seconds the server may take to start and list its tools."""
    keywords: dict[str, list[str]] = Field(default_factory=dict)
    """Words that call for a tool, by tool name (they help the offline model pick it)."""
    requires_approval: bool | list[str] = False
    """``true``: every call of the server's tools waits for the user's approval; a list: these tools'
    calls do (the server's own tool names)."""

    def needs_approval(self, tool: str) -> bool:
        """Whether calls of the server's ``tool`` wait for the user's approval."""
        if isinstance(self.requires_approval, bool):
            return self.requires_approval
        return tool in self.requires_approval

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs either 'command' (stdio) or 'url' (streamable HTTP), not both")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"an MCP server's url must start with http:// or https://, not {self.url!r}")
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def expanded(self, values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """``env`` and ``headers`` with ``${NAME}`` taken from ``values`` (ValueError names a missing one)."""

        def fill(text: str) -> str:
            def one(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in values:
                    raise ValueError(f"${{{name}}} is not set in Chorus's environment")
                return values[name]

            return _ENV_REFERENCE.sub(one, text)

        return ({k: fill(v) for k, v in self.env.items()}, {k: fill(v) for k, v in self.headers.items()})


def check_server_names(servers: Mapping[str, McpServerSpec]) -> None:
    """ValueError for a server name that cannot prefix a tool name."""
    for name in servers:
        if not _SERVER_NAME.match(name):
            raise ValueError(f"MCP server name {name!r}: use lower-case letters, digits and single '_' (at most "
                             "31), starting with a letter; it prefixes the names of its tools")


def load_mcp_servers(path: Path) -> dict[str, McpServerSpec]:
    """The MCP servers of ``CHORUS_MCP_SERVERS``: a YAML mapping of name to server (ValueError with the
    file's name when it cannot be used)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError("the file must hold a mapping of server names to servers")
        data = data.get("mcp_servers", data)
        servers = {str(k): McpServerSpec.model_validate(v) for k, v in data.items()}
        check_server_names(servers)
    except (OSError, yaml.YAMLError, ValidationError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return servers


class TeamFieldError(ValueError):
    """A team file's field that its team type cannot run; the message names the field's line."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _line_of(text: str, key: str) -> int | None:
    """The line (1-based) of top-level ``key`` in a YAML document, if it is there."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if isinstance(node, yaml.MappingNode):
        for name, _value in node.value:
            if getattr(name, "value", None) == key:
                return int(name.start_mark.line) + 1
    return None


def _where(path: Path, text: str, exc: Exception) -> str:
    """``path:line`` of the field ``exc`` is about (a type's check, or pydantic's first error), else ``path``."""
    key: str | None = None
    if isinstance(exc, TeamFieldError):
        key = exc.field
    elif isinstance(exc, ValidationError) and exc.errors() and exc.errors()[0]["loc"]:
        key = str(exc.errors()[0]["loc"][0])
    line = _line_of(text, key) if key else None
    return f"{path}:{line}" if line else str(path)


class TeamSpec(BaseModel):
    """A team: who is in it, how the next speaker is chosen, and when a turn ends."""

    model_config = ConfigDict(extra="forbid")
    name: str
    display_name: str | None = None
    description: str = ""
    type: str = Field(default="selector", pattern=r"^[a-z][a-z0-9_]{0,63}$")
    """How members take turns: a team type's name (:mod:`chorus.teams.registry`): ``selector``,
    ``round_robin``, ``sequential``, ``iterative``, ``swarm`` or ``graph``."""
    members: list[str] = Field(default_factory=lambda: ["*"])
    model: str | None = None
    termination: Termination = Field(default_factory=Termination)
    allow_repeated_speaker: bool = True
    routing: str = ""
    """Guidance for the selector (the team's supervisor), added to its prompt: who handles what."""
    max_iterations: int = Field(default=3, ge=1, le=20)
    """``iterative``: rounds of draft and review before the last draft stands unapproved."""
    approval: str = Field(default="APPROVED", min_length=1, max_length=40)
    """``iterative``: a reviewer approves the draft by starting its reply with this phrase."""
    edges: list[GraphEdge] = Field(default_factory=list)
    """``graph``: who speaks after whom (fan-out: several ``to``; a join: several edges into one)."""
    handoffs: dict[str, list[str]] = Field(default_factory=dict)
    """``swarm``: whom each member may hand the conversation to (default: every other member)."""
    start: str | None = None
    """``graph``: the member that speaks first when every member has an incoming edge (a loop)."""
    agents: dict[str, AgentOverride] = Field(default_factory=dict)
    mcp_servers: dict[str, McpServerSpec] = Field(default_factory=dict)
    """MCP servers whose tools join the team, by name (their tools are called ``<name>__<tool>``)."""
    approvals: list[str] = Field(default_factory=list)
    """Tools whose calls wait for the user's approval in this team, on top of those that always do
    (``ToolSpec(requires_approval=True)``); an MCP tool by its team name, ``<server>__<tool>``."""
    starters: list[Starter] = Field(default_factory=list)
    default: bool = False
    source: str | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _TEAM_NAME.match(value):
            raise ValueError("team names are lower-case letters, digits, '-' and '_' (at most 64)")
        return value

    @model_validator(mode="after")
    def _check_members(self) -> TeamSpec:
        if not self.members:
            raise ValueError("a team needs at least one member ('*' means every registered agent)")
        check_server_names(self.mcp_servers)
        return self

    @property
    def title(self) -> str:
        return self.display_name or self.name.replace("-", " ").replace("_", " ").title()


DEFAULT_TEAM = TeamSpec(
    name="chorus",
    display_name="Chorus",
    description="Every installed agent; the best one for each message answers.",
    default=True,
)
"""Used when the agents directory has no team at all."""


class TeamCatalog(BaseModel):
    """The teams of this deployment and the files that could not be read."""

    teams: dict[str, TeamSpec]
    errors: list[str] = Field(default_factory=list)

    @property
    def default(self) -> TeamSpec:
        return next((t for t in self.teams.values() if t.default), next(iter(self.teams.values())))

    def get(self, name: str | None) -> TeamSpec:
        """The team called ``name`` (or the default); KeyError with the choices otherwise."""
        if name is None:
            return self.default
        key = name.strip().lower()
        for team in self.teams.values():
            if key in (team.name, team.title.lower()):
                return team
        raise KeyError(f"Unknown team {name!r}; the teams are: {', '.join(self.teams)}.")


def load_teams(
    directory: Path,
    default_team: str | None = None,
    plugin_teams: Mapping[str, TeamSpec] | None = None,
    team_types: Collection[str] | None = None,
    check: Callable[[TeamSpec], None] | None = None,
) -> TeamCatalog:
    """Read every ``*.yaml``/``*.yml`` under ``directory``; bad files become errors.

    ``plugin_teams`` (from the ``chorus_register_teams`` hook) come after the files' teams; a
    file's team of the same name replaces a plugin's. With ``team_types`` (the known types'
    names), a team of another type is refused, with its file and line; ``check`` (the team
    type's own, :func:`chorus.teams.registry.check_team`) may refuse a team too.
    """

    def check_type(spec: TeamSpec) -> None:
        if team_types is not None and spec.type not in team_types:
            raise TeamFieldError("type", f"team {spec.name!r} has an unknown type {spec.type!r} "
                                         f"(known: {', '.join(sorted(team_types))})")
        if check is not None:
            try:
                check(spec)
            except ValueError:
                raise
            except Exception as exc:  # a plugin's team type with a broken check: refuse the team, not the load
                raise ValueError(f"team {spec.name!r}: its type's check failed ({type(exc).__name__}: {exc})") from exc

    teams: dict[str, TeamSpec] = {}
    errors: list[str] = []
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]) if directory.is_dir() else []
    for path in files:
        text = ""
        try:
            text = path.read_text(encoding="utf-8")
            data = yaml.safe_load(text)
            if not isinstance(data, dict):
                raise ValueError("the file must hold a mapping with at least 'name'")
            spec = TeamSpec.model_validate({**data, "source": str(path)})
            check_type(spec)
        except (OSError, yaml.YAMLError, ValueError, ValidationError) as exc:
            message = f"{_where(path, text, exc)}: {exc}"
            log.error("skipping team file %s", message)
            errors.append(message)
            continue
        if spec.name in teams:
            errors.append(f"{path}: team {spec.name!r} is already defined in {teams[spec.name].source}")
            continue
        teams[spec.name] = spec
    if not teams:
        teams[DEFAULT_TEAM.name] = DEFAULT_TEAM
    for name, spec in (plugin_teams or {}).items():
        try:
            check_type(spec)
        except ValueError as exc:
            errors.append(f"{spec.source}: {exc}")
            continue
        if name in teams:
            if teams[name].source is None:  # the built-in default team, not an operator's choice
                errors.append(f"{spec.source}: team {name!r} is the name of Chorus's built-in default team; "
                              "rename it")
            else:
                log.info("team %r of %s is replaced by %s", name, spec.source, teams[name].source)
            continue
        # The deployment picks its default (its files, or CHORUS_DEFAULT_TEAM), never a plugin.
        teams[name] = spec.model_copy(update={"default": False})
    if default_team:
        if default_team not in teams:
            errors.append(f"CHORUS_DEFAULT_TEAM={default_team!r} is not a team; using the first one")
        else:
            teams = {n: t.model_copy(update={"default": n == default_team}) for n, t in teams.items()}
    # The default team comes first: it is the first chat profile in the page.
    ordered = sorted(teams.values(), key=lambda t: not t.default)
    return TeamCatalog(teams={t.name: t for t in ordered}, errors=errors)
