"""The team types Chorus knows, by the name a team file's ``type:`` gives."""

from __future__ import annotations

from types import MethodType

from chorus.teams.graph import Graph
from chorus.teams.iterative import Iterative
from chorus.teams.kind import BaseTeamType, TeamType
from chorus.teams.round_robin import RoundRobin
from chorus.teams.selector import Selector
from chorus.teams.sequential import Sequential
from chorus.teams.spec import TeamSpec

_BUILT_IN: tuple[TeamType, ...] = (Selector(), RoundRobin(), Sequential(), Iterative(), Graph())
_TYPES: dict[str, TeamType] = {kind.name: kind for kind in _BUILT_IN}


def team_type(name: str) -> TeamType:
    """The type called ``name``; KeyError (naming the known ones) when there is none."""
    try:
        return _TYPES[name]
    except KeyError:
        raise KeyError(f"unknown team type {name!r} (known: {', '.join(sorted(_TYPES))})") from None


def team_type_names() -> list[str]:
    return sorted(_TYPES)


def check_team(spec: TeamSpec) -> None:
    """The team type's own check of a team file (:meth:`TeamType.check`); unknown types pass here."""
    kind = _TYPES.get(spec.type)
    if kind is not None:
        kind.check(spec)


def register_team_type(kind: TeamType) -> None:
    """Add a team type (a plugin hook will call this); a taken name is refused.

    A type needs ``name``, ``default_max_messages`` and ``build``; the methods it leaves out
    (``check``, ``member_role``, ``member_instructions``, ``termination``, ``stop_notice``) get
    :class:`BaseTeamType`'s.
    """
    if kind.name in _TYPES:
        raise ValueError(f"team type {kind.name!r} is already registered")
    for method in ("check", "member_role", "member_instructions", "termination", "stop_notice"):
        if not hasattr(kind, method):
            setattr(kind, method, MethodType(getattr(BaseTeamType, method), kind))
    _TYPES[kind.name] = kind


def unregister_team_type(name: str) -> None:
    """Forget a type added with :func:`register_team_type` (the built-in ones stay)."""
    if name not in {kind.name for kind in _BUILT_IN}:
        _TYPES.pop(name, None)
