"""Finding plugins and deciding, from their metadata alone, which may load.

Nothing here imports a plugin: a plugin that ``CHORUS_PLUGINS`` does not allow, or that the
allow-list cannot tell apart from another, is never imported at all.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from chorus.settings import normalise_name

ENTRY_POINT_GROUP = "chorus"

DEFAULT_PLUGINS: tuple[str, ...] = ("chorus.builtin.assistant", "chorus.builtin.guide", "chorus.builtin.librarian")
"""Modules of Chorus's built-in agents; loaded like any plugin, distribution ``chorus``."""



@dataclass(frozen=True)
class Candidate:
    """A plugin found but not imported yet: its names, and how to import it."""

    name: str
    distribution: str
    version: str
    module: str
    load: Callable[[], object]
    builtin: bool


def _builtin_candidates() -> list[Candidate]:
    from chorus._version import __version__

    return [
        Candidate(
            name=module.rsplit(".", 1)[-1],
            distribution="chorus",
            version=__version__,
            module=module,
            load=functools.partial(importlib.import_module, module),
            builtin=True,
        )
        for module in DEFAULT_PLUGINS
    ]


def _entry_point_candidates(eps: Iterable[EntryPoint] | None = None) -> list[Candidate]:
    found = entry_points(group=ENTRY_POINT_GROUP) if eps is None else eps
    result = []
    for ep in sorted(found, key=lambda e: e.name):
        dist = ep.dist
        result.append(
            Candidate(
                name=ep.name,
                distribution=dist.name if dist else "?",
                version=dist.version if dist else "?",
                module=ep.value,
                load=ep.load,
                builtin=False,
            )
        )
    return result


def _returns(obj: object) -> Callable[[], object]:
    return lambda: obj


def discover(
    eps: Iterable[EntryPoint] | None = None,
    extra: Iterable[tuple[str, object]] = (),
    *,
    include_builtins: bool = True,
) -> list[Candidate]:
    """Every plugin found (built-ins, the ``chorus`` entry points or ``eps``, ``extra``), none imported."""
    found = _builtin_candidates() if include_builtins else []
    found += _entry_point_candidates(eps)
    for name, obj in extra:
        found.append(Candidate(name, "(in process)", "", getattr(obj, "__name__", repr(obj)), _returns(obj), False))
    return found


def _describe(candidate: Candidate) -> str:
    return f"{candidate.distribution} {candidate.version} (entry point {candidate.name!r} = {candidate.module})"


def _matches(candidate: Candidate, entry: str) -> bool:
    """Whether the normalised allow-list ``entry`` names ``candidate``."""
    dist, qualified, name = entry.partition(":")
    if qualified:
        return normalise_name(candidate.distribution) == dist and normalise_name(candidate.name) == name
    names = {candidate.name, candidate.distribution, candidate.module}
    return entry in {normalise_name(n) for n in names}


def select(
    candidates: list[Candidate], allow: set[str] | None
) -> tuple[list[tuple[Candidate, str | None]], list[str]]:
    """Which candidates may load, decided on metadata alone (nothing is imported).

    Returns the candidates the allow-list names (all without one), each with ``None`` or why it
    is refused anyway, and the allow-list's own errors. A bare entry that matches plugins of
    two distributions, and two chosen plugins with one name, are refused, all of them: loading
    whichever comes first is how another package could stand in for the allowed one.
    """
    refused: dict[int, str] = {}
    errors: list[str] = []
    if allow is None:
        chosen = set(range(len(candidates)))
    else:
        chosen = set()
        for entry in sorted(allow):
            dist, qualified, name = entry.partition(":")
            if qualified and not (dist and name):
                errors.append(f"CHORUS_PLUGINS entry {entry!r} is neither 'distribution' nor "
                              "'distribution:entry_point'")
                continue
            matched = [i for i, c in enumerate(candidates) if _matches(c, entry)]
            if not matched:
                errors.append(f"CHORUS_PLUGINS names {entry!r}, but no installed plugin or distribution has that name")
                continue
            if len({normalise_name(candidates[i].distribution) for i in matched}) > 1:
                reason = (f"CHORUS_PLUGINS entry {entry!r} is ambiguous: it matches "
                          + " and ".join(_describe(candidates[i]) for i in matched)
                          + "; none of them is loaded. Write 'distribution' or 'distribution:entry_point'.")
                for i in matched:
                    refused.setdefault(i, reason)
            chosen.update(matched)
    by_name: dict[str, list[int]] = {}
    for i in sorted(chosen):
        by_name.setdefault(normalise_name(candidates[i].name), []).append(i)
    for name, same in by_name.items():
        if len(same) > 1:
            reason = (f"{len(same)} plugins are named {name!r}: " + " and ".join(_describe(candidates[i]) for i in same)
                      + "; none of them is loaded. Allow one with CHORUS_PLUGINS=distribution:entry_point.")
            for i in same:
                refused.setdefault(i, reason)
    return [(c, refused.get(i)) for i, c in enumerate(candidates) if i in chosen], errors
