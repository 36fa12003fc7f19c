"""The docs say what the code does: every setting is in the README's configuration table, and every
hook, public name, event and event field is in the plugin guide, whose code imports only the
public API."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import chorus
from chorus import events
from chorus.plugins import hookspecs
from chorus.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
GUIDE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readmes_configuration_table() -> None:
    first_cells = re.findall(r"^\| ((?:`CHORUS_[A-Z0-9_]+`(?:, )?)+) \|", README, re.MULTILINE)
    table = {name for cell in first_cells for name in re.findall(r"`(CHORUS_[A-Z0-9_]+)`", cell)}
    settings = {f"CHORUS_{name.upper()}" for name in Settings.model_fields}
    assert settings - table == set(), "settings missing from README's configuration table"
    # Variables that are not Settings fields but are read where they belong: `chorus run`'s options,
    # the widget's signing secret (chorus.widget) and the music store plugin's database.
    elsewhere = {"CHORUS_HOST", "CHORUS_PORT", "CHORUS_WIDGET_SECRET", "CHORUS_MUSIC_STORE_URL"}
    assert table - settings == elsewhere, "README's configuration table names settings that do not exist"


def test_every_hook_and_public_name_is_in_the_plugin_guide() -> None:
    hooks = [name for name in vars(hookspecs) if name.startswith("chorus_")]
    assert hooks, "no hook specs found"
    for name in [*hooks, *chorus.__all__]:
        assert f"`{name}" in GUIDE, f"docs/plugins.md does not mention {name}"


def test_every_event_and_what_a_test_reads_of_it_is_in_the_plugin_guide() -> None:
    kinds = [cls for cls in vars(events).values()
             if isinstance(cls, type) and issubclass(cls, events.TurnEvent) and cls is not events.TurnEvent]
    assert len(kinds) >= 10
    for kind in kinds:
        assert f"`{kind.__name__}`" in GUIDE, f"docs/plugins.md does not list {kind.__name__}"
    said = GUIDE[GUIDE.index("**The events a test reads**"):]
    for field in ("agent", "content", "name", "arguments", "result", "is_error", "agents", "target", "items",
                  "text", "code", "message", "stop_reason", "detail", "cost", "model"):
        assert f".{field}" in said, f"the events' .{field} is not described"
    for kind in kinds:  # every field the guide names exists on some event
        names = {f.name for f in dataclasses.fields(kind)}
        assert names, kind


def test_the_guides_code_imports_only_the_public_api() -> None:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE, re.DOTALL)
    assert blocks
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chorus"):
                assert node.module in ("chorus", "chorus.testing"), f"the guide imports {node.module}"
                public = chorus.__all__ if node.module == "chorus" else __import__(
                    "chorus.testing", fromlist=["__all__"]).__all__
                for alias in node.names:
                    assert alias.name in public, f"the guide imports {node.module}.{alias.name}, not public"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("chorus.") for a in node.names), "the guide imports a private module"
