"""The team types Chorus knows, by the name a team file's ``type:`` gives."""

from __future__ import annotations

from chorus.teams.kind import TeamType
from chorus.teams.round_robin import RoundRobin
from chorus.teams.selector import Selector

_TYPES: dict[str, TeamType] = {kind.name: kind for kind in (Selector(), RoundRobin())}


def team_type(name: str) -> TeamType:
    """The type called ``name``; KeyError (naming the known ones) when there is none."""
    try:
        return _TYPES[name]
    except KeyError:
        raise KeyError(f"unknown team type {name!r} (known: {', '.join(sorted(_TYPES))})") from None


def team_type_names() -> list[str]:
    return sorted(_TYPES)


def register_team_type(kind: TeamType) -> None:
    """Add a team type (a plugin hook will call this); a taken name is refused."""
    if kind.name in _TYPES:
        raise ValueError(f"team type {kind.name!r} is already registered")
    _TYPES[kind.name] = kind


def unregister_team_type(name: str) -> None:
    """Forget a type added with :func:`register_team_type` (the built-in ones stay)."""
    if name not in ("selector", "round_robin"):
        _TYPES.pop(name, None)
