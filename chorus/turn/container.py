"""What one process loads once: settings, plugins, teams, memory, tracing (:class:`Chorus`).

Pages, the widget, the command line and tests all start here: :meth:`Chorus.load` reads the
settings, loads the plugins and the team files (a broken one is reported, never fatal) and
:meth:`Chorus.open_session` starts a conversation with a team.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chorus._version import __version__
from chorus.mcp import McpHub
from chorus.memory import MemoryService
from chorus.plugins.manager import Registry, load_plugins
from chorus.settings import OFFLINE_MODEL, Settings, get_settings
from chorus.store.checkpoints import CheckpointStore
from chorus.store.personal_keys import PersonalKey, PersonalKeys, encryption_secret
from chorus.store.usage import UsageLedger
from chorus.teams import TeamCatalog, TeamSpec, load_teams
from chorus.teams.overlay import Overlays
from chorus.tracing import Tracer
from chorus.turn.errors import ChorusError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from chorus.turn.observers import TurnObserver
    from chorus.turn.session import ChatSession


@dataclass
class Chorus:
    """What one process loads once: settings, the plugin registry and the team catalog."""

    settings: Settings
    registry: Registry
    catalog: TeamCatalog
    memory: MemoryService | None = None
    """Per-user memory and the knowledge base (None with ``CHORUS_MEMORY=false``)."""
    tracer: Tracer | None = None
    """MLflow tracing of every turn (None with ``CHORUS_TRACING=false``)."""
    observers: list[TurnObserver] = field(default_factory=list)
    """More observers of every turn, after the tracer's, the cost ledger's and the metrics'
    (:mod:`chorus.turn.observers`)."""
    overlays: Overlays = field(default_factory=Overlays)
    """The admins' versions of the teams (the admin page), laid over the team files by :meth:`team`."""
    mcp: McpHub = field(default_factory=McpHub)
    """This process's connections to the teams' MCP servers (:mod:`chorus.mcp`)."""
    _metrics: TurnObserver | None = field(default=None, repr=False)
    _secret: str | None = field(default=None, repr=False)

    @classmethod
    def load(cls, settings: Settings | None = None, *, extra_plugins: Iterable[tuple[str, object]] = ()) -> Chorus:
        """Load plugins and teams; broken plugins and team files are reported, never fatal."""
        settings = settings or get_settings()
        registry = load_plugins(settings, extra=extra_plugins)
        from chorus.builtin.guards import builtin_guards

        registry.guards += builtin_guards(settings)  # CHORUS_GUARDS, whatever CHORUS_PLUGINS allows
        from chorus.teams.registry import checker, team_type_names

        catalog = load_teams(settings.agents_dir, settings.default_team, registry.teams, team_type_names(registry),
                             checker(registry))
        memory = MemoryService(settings, registry.embedders) if settings.memory else None
        tracer = Tracer(settings, __version__) if settings.tracing else None
        return cls(settings=settings, registry=registry, catalog=catalog, memory=memory, tracer=tracer,
                   mcp=McpHub.from_settings(settings))

    def team(self, name: str | None = None) -> TeamSpec:
        """The team called ``name`` (default team when None), with its admin version applied;
        ChorusError if unknown."""
        try:
            spec = self.catalog.get(name)
        except KeyError as exc:
            raise ChorusError(exc.args[0]) from None
        return self.overlays.apply(spec, self.registry)

    def file_team(self, name: str | None = None) -> TeamSpec:
        """The team as its file (or plugin) says, without an admin's version."""
        try:
            return self.catalog.get(name)
        except KeyError as exc:
            raise ChorusError(exc.args[0]) from None

    async def connect_tools(self, team: str | TeamSpec | None = None) -> None:
        """Start the MCP servers of ``team`` that are not running yet (each waits at most its
        ``start_timeout``), so that a conversation opened next has their tools. Failures are
        reported (:meth:`problems`), never raised."""
        spec = team if isinstance(team, TeamSpec) else self.team(team)
        await self.mcp.connect(spec)

    def open_session(
        self,
        team: str | None = None,
        *,
        user_id: str = "local",
        thread_id: str | None = None,
        stream: bool = True,
        checkpoints: CheckpointStore | None = None,
        ledger: UsageLedger | None = None,
        personal: PersonalKey | None = None,
    ) -> ChatSession:
        """A new conversation with ``team``. Raises ChorusError for an unknown team or model.

        With ``personal`` (the user's own provider key), every call uses that key and its model.

        With ``checkpoints``, the team's state is saved after every turn and
        :meth:`ChatSession.resume` restores it. With ``ledger``, every model call is recorded
        and the daily cost budget is enforced.
        """
        from chorus.turn.session import ChatSession

        spec = self.team(team)
        session = ChatSession(
            chorus=self,
            spec=spec,
            user_id=user_id,
            thread_id=thread_id or uuid.uuid4().hex,
            stream=stream,
            checkpoints=checkpoints,
            ledger=ledger,
            personal=personal,
        )
        session.build()
        return session

    def personal_keys(self, engine: AsyncEngine) -> PersonalKeys | None:
        """Users' own provider keys in ``engine``'s store (None when ``CHORUS_PERSONAL_KEYS`` is off)."""
        if not self.settings.personal_keys:
            return None
        if self._secret is None:
            self._secret = encryption_secret(self.settings.home, self.settings.secret_key)
        return PersonalKeys(engine, self._secret)

    def turn_observers(self) -> list[TurnObserver]:
        """Who observes each turn: the tracer (when tracing is on), the cost ledger, the metrics, then
        :attr:`observers`."""
        from chorus.turn.observers import LedgerObserver, MetricsObserver, TracingObserver

        found: list[TurnObserver] = []
        if self.tracer is not None:
            found.append(TracingObserver(self.tracer))
        found.append(LedgerObserver())
        if self._metrics is None:
            self._metrics = MetricsObserver()  # one per process: it follows each turn by its id
        found.append(self._metrics)
        return found + self.observers

    def uses_offline_model(self, team: str | None = None) -> bool:
        """Whether any member (or the selector) of ``team`` answers with the offline model."""
        from chorus.teams.build import resolve_members

        spec = self.team(team)
        members, _ = resolve_members(spec, self.registry)
        team_model = spec.model or self.settings.model
        models = {m.model or team_model for m in members} | {team_model}
        return OFFLINE_MODEL in models

    def problems(self) -> list[str]:
        """Plugins and team files that failed to load, one line each, for operators only (the log
        at start-up, the CLI): they carry server paths and plugin errors. Users are shown
        :data:`PROBLEMS_NOTICE` instead."""
        lines = list(self.registry.errors)
        lines += [f"plugin {r.name!r} ({r.distribution} {r.version}) was skipped: {r.error}"
                  + (f" [at {r.where}]" if r.where else "") for r in self.registry.problems]
        lines += [f"team file skipped: {e}" for e in self.catalog.errors]
        lines += self.mcp.problems()
        return lines
