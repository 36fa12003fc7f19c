"""The team types Chorus knows, by the name a team file's ``type:`` gives.

The built-in types come first; plugins add theirs with the ``chorus_register_team_types`` hook
(kept in the plugin :class:`~chorus.plugins.manager.Registry` that loaded them, so two
deployments in one process never share them); :func:`register_team_type` adds one for the whole
process (tests, embedding code).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MethodType
from typing import Any

from chorus.plugins.manager import Registry
from chorus.teams.graph import Graph
from chorus.teams.iterative import Iterative
from chorus.teams.kind import BaseTeamType, TeamType
from chorus.teams.round_robin import RoundRobin
from chorus.teams.selector import Selector
from chorus.teams.sequential import Sequential
from chorus.teams.spec import BUILT_IN_TEAM_TYPES, TeamSpec
from chorus.teams.swarm import Swarm

_BUILT_IN: tuple[TeamType, ...] = (Selector(), RoundRobin(), Sequential(), Iterative(), Swarm(), Graph())
assert tuple(kind.name for kind in _BUILT_IN) == BUILT_IN_TEAM_TYPES
_TYPES: dict[str, TeamType] = {kind.name: kind for kind in _BUILT_IN}
_OPTIONAL = ("check", "member_role", "member_instructions", "handoffs", "steps", "termination", "stop_notice")


def _known(registry: Registry | None) -> dict[str, Any]:
    return {**(registry.team_types if registry is not None else {}), **_TYPES}


def team_type(name: str, registry: Registry | None = None) -> TeamType:
    """The type called ``name`` (built in, registered, or a plugin's in ``registry``); KeyError
    naming the known ones when there is none."""
    known = _known(registry)
    try:
        return complete(known[name])
    except KeyError:
        raise KeyError(f"unknown team type {name!r} (known: {', '.join(sorted(known))})") from None


def team_type_names(registry: Registry | None = None) -> list[str]:
    return sorted(_known(registry))


def check_team(spec: TeamSpec, registry: Registry | None = None) -> None:
    """The team type's own check of a team file (:meth:`TeamType.check`); unknown types pass here."""
    kind = _known(registry).get(spec.type)
    if kind is not None:
        complete(kind).check(spec)


def checker(registry: Registry | None) -> Callable[[TeamSpec], None]:
    """:func:`check_team` for the types of ``registry`` (what :func:`~chorus.teams.spec.load_teams` takes)."""
    return lambda spec: check_team(spec, registry)


def complete(kind: Any) -> TeamType:
    """``kind`` with :class:`BaseTeamType`'s method for each optional one it leaves out."""
    for method in _OPTIONAL:
        if not hasattr(kind, method):
            setattr(kind, method, MethodType(getattr(BaseTeamType, method), kind))
    return kind  # type: ignore[no-any-return]


def register_team_type(kind: TeamType) -> None:
    """Add a team type for the whole process; a taken name is refused. Plugins use the
    ``chorus_register_team_types`` hook instead.

    A type needs ``name``, ``default_max_messages`` and ``build``; the methods it leaves out
    (``check``, ``member_role``, ``member_instructions``, ``handoffs``, ``steps``, ``termination``,
    ``stop_notice``) get :class:`BaseTeamType`'s.
    """
    if kind.name in _TYPES:
        raise ValueError(f"team type {kind.name!r} is already registered")
    _TYPES[kind.name] = complete(kind)


def unregister_team_type(name: str) -> None:
    """Forget a type added with :func:`register_team_type` (the built-in ones stay)."""
    if name not in BUILT_IN_TEAM_TYPES:
        _TYPES.pop(name, None)
