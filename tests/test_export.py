"""A conversation exported as Markdown or JSON has no empty section: a message sent with a command
and no text (the page's Export button) shows its command, empty messages are left out, and the
page's export request itself is not part of its own export."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import sqlalchemy as sa

from chorus.settings import Settings
from chorus.store import database_url, make_engine, upgrade
from chorus.store.export import load_thread, render, step_commands
from chorus.store.schema import steps, threads


def _empty_sections(markdown: str) -> list[str]:
    parts = re.split(r"(?m)^(## .*)$", markdown)
    return [parts[i] for i in range(1, len(parts), 2) if not parts[i + 1].strip()]


def test_an_export_has_no_empty_section_and_shows_commands(tmp_path: Path) -> None:
    url = database_url(Settings(home=tmp_path / "home"))
    upgrade(url)
    thread_id = str(uuid.uuid4())
    rows = [  # (type, name, output, command)
        ("user_message", "alice", "What time is it in Tokyo?", None),
        ("assistant_message", "assistant", "It is noon in Asia/Tokyo.", None),
        ("user_message", "alice", "", "Export"),  # the Export button, no text
        ("assistant_message", "Chorus", "Here is this conversation as MD: chorus-1.md", None),
        ("user_message", "alice", "", None),  # nothing at all
        ("user_message", "alice", "json please", "Export"),  # the request being answered now
    ]
    ids = [str(uuid.uuid4()) for _ in rows]

    async def scenario() -> tuple[str, str, dict[str, str]]:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.insert(threads).values(id=thread_id, name="Clocks", userIdentifier="alice",
                                                             createdAt="2026-12-01T10:00:00Z"))
                for n, ((kind, name, output, command), step_id) in enumerate(zip(rows, ids, strict=True)):
                    await conn.execute(sa.insert(steps).values(
                        id=step_id, threadId=thread_id, name=name, type=kind, output=output, command=command,
                        streaming=False, createdAt=f"2026-12-01T10:00:0{n}Z"))
            thread = await load_thread(engine, thread_id, owner="alice", leave_out={ids[-1]})
            return render(thread, "md"), render(thread, "json"), await step_commands(engine, thread_id)
        finally:
            await engine.dispose()

    markdown, as_json, commands = asyncio.run(scenario())
    assert _empty_sections(markdown) == [], markdown
    assert markdown.count("## alice") == 2  # the question and the Export request, not the empty one
    assert "**Export**" in markdown and "json please" not in markdown
    messages = [s for s in json.loads(as_json)["steps"] if s["kind"] == "message"]
    assert [(s["text"], s["command"]) for s in messages] == [
        ("What time is it in Tokyo?", None), ("It is noon in Asia/Tokyo.", None), ("", "Export"),
        ("Here is this conversation as MD: chorus-1.md", None)]
    assert commands == {ids[2]: "Export", ids[5]: "Export"}
