"""``make_chorus``: a :class:`~chorus.turn.Chorus` loaded on a temporary home, for one test."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from chorus.models.local import LocalModel
from chorus.settings import OFFLINE_MODEL, Settings
from chorus.teams.spec import TeamSpec
from chorus.testing._models import registered_model
from chorus.turn import Chorus

IN_PROCESS = "(in process)"
"""The distribution ``chorus.plugins`` names for plugin objects passed to ``Chorus.load(extra_plugins=...)``."""

PluginArg = object
"""A plugin object (a module, or any object with ``@hookimpl`` methods), or a ``(name, object)`` pair."""

_NOT_ALLOWED = {
    "plugins": "choose installed plugins with installed=[...] and pass plugin objects with plugins=[...]",
    "home": "pass home= (a directory) instead",
    "forbid_real_models": "a test Chorus always refuses real model calls",
}


class _ArgumentsOnly(Settings):
    """Settings from the arguments and the defaults alone: no ``CHORUS_*`` variable, no ``.env`` file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class ChorusFactory:
    """Loads Chorus the way a deployment would, on a temporary home; what it registers ends with it.

    The ``make_chorus`` fixture is one of these (closed after the test). Outside pytest::

        with ChorusFactory(tmp_dir) as make_chorus:
            chorus = make_chorus(plugins=[my_plugin])

    Each call returns a new :class:`Chorus`. Calls share the factory's ``home`` (like a deployment
    restarted on the same data directory) unless given ``home=``.
    """

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._stack = ExitStack()
        self._models: dict[int, tuple[LocalModel, str]] = {}
        self._loaded: list[Chorus] = []

    def __call__(
        self,
        *,
        plugins: Iterable[PluginArg] = (),
        installed: str | Iterable[str] | None = (),
        model: str | LocalModel = OFFLINE_MODEL,
        memory: bool = False,
        tracing: bool = False,
        teams: Iterable[TeamSpec | Mapping[str, Any]] = (),
        home: Path | None = None,
        **settings: Any,
    ) -> Chorus:
        """A loaded Chorus with exactly the plugins asked for.

        ``plugins``: plugin objects registered for this Chorus only (a module or an object with
        hook implementations; ``("name", obj)`` to name it, else its module or class name).
        ``installed``: the installed plugins to load too, as ``CHORUS_PLUGINS`` entries
        (``"chorus"`` for Chorus's built-in agents, ``"chorus-weather"``, ``"weather"``); none by
        default, ``None`` for every installed plugin. ``model``: a model string (``"offline"``,
        the default) or a model object such as a :class:`ScriptedModel`, registered under a
        name of its own until the factory closes; a real provider's model string is refused at
        its first call. ``memory`` and ``tracing`` are off unless asked. ``teams``: the
        deployment's teams (as team files: the first is the default unless one says
        ``default=True``); none gives Chorus's default team of every agent. Other keyword
        arguments are :class:`~chorus.Settings` fields. Settings come from these arguments
        alone: ``CHORUS_*`` environment variables and ``.env`` files are not read.
        """
        for key, why in _NOT_ALLOWED.items():
            if key in settings:
                raise TypeError(f"make_chorus() does not take {key}=: {why}")
        extra = _named(plugins)
        allow = _allow_list(installed, [name for name, _ in extra])
        home = Path(home) if home is not None else self.home
        agents_dir = home / "agents"
        _write_teams(agents_dir, teams)
        values: dict[str, Any] = {
            "home": home,
            "agents_dir": agents_dir,
            "knowledge_dir": home / "knowledge",
            "offline_token_delay": 0.0,
            **settings,
            "model": model if isinstance(model, str) else self.model_name(model),
            "memory": memory,
            "tracing": tracing,
            "plugins": allow,
            "forbid_real_models": True,
        }
        chorus = Chorus.load(Settings(**_ArgumentsOnly(**values).model_dump()), extra_plugins=extra)
        self._loaded.append(chorus)
        return chorus

    def model_name(self, model: LocalModel) -> str:
        """The model string of ``model``, registered (once) until the factory closes.

        For a second model in one Chorus: ``TeamSpec(model=make_chorus.model_name(selector))``
        or ``AgentSpec(model=...)``.
        """
        if id(model) not in self._models:
            self._models[id(model)] = (model, self._stack.enter_context(registered_model(model)))
        return self._models[id(model)][1]

    def close(self) -> None:
        """Unregister this factory's models and flush the traces of the Chorus instances it loaded."""
        try:
            for chorus in self._loaded:
                if chorus.tracer is not None:
                    chorus.tracer.close()
        finally:
            self._loaded.clear()
            self._models.clear()
            self._stack.close()

    def __enter__(self) -> ChorusFactory:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _named(plugins: Iterable[PluginArg]) -> list[tuple[str, object]]:
    named: list[tuple[str, object]] = []
    for item in plugins:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, obj = item
        else:
            obj = item
            name = str(getattr(obj, "__name__", type(obj).__name__)).rsplit(".", 1)[-1]
        if not re.fullmatch(r"[\w.-]+", name):
            raise ValueError(f"plugin name {name!r}: use letters, digits, '_', '-' and '.'")
        if any(name == other for other, _ in named):
            raise ValueError(f"two plugins are named {name!r}: pass (name, plugin) pairs to tell them apart")
        named.append((name, obj))
    return named


def _allow_list(installed: str | Iterable[str] | None, extra: list[str]) -> str | None:
    """``CHORUS_PLUGINS`` for exactly these plugins (None: every installed one, and the extra ones)."""
    if installed is None:
        return None
    entries = [e.strip() for e in installed.split(",")] if isinstance(installed, str) else [*installed]
    entries = [e for e in entries if e]
    if not entries and not extra:
        raise ValueError("make_chorus() needs plugins=[...] or installed=[...]: a Chorus without plugins has no agent")
    # Qualified by the distribution Chorus gives objects passed in, so that an installed plugin of
    # the same name is neither loaded instead nor refused as ambiguous.
    return ",".join([*entries, *(f"{IN_PROCESS}:{name}" for name in extra)])


def _write_teams(directory: Path, teams: Iterable[TeamSpec | Mapping[str, Any]]) -> None:
    """The teams as team files in ``directory`` (whose earlier files are removed), in order."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in [*directory.glob("*.yaml"), *directory.glob("*.yml")]:
        old.unlink()
    for index, team in enumerate(teams):
        spec = team if isinstance(team, TeamSpec) else TeamSpec.model_validate(team)
        data = spec.model_dump(mode="json", exclude_defaults=True)
        (directory / f"{index:03d}-{spec.name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
