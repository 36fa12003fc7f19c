"""chorus.web.chainlit_fixes: Chainlit's messages and steps are made without blocking the event loop,
and still get strictly increasing timestamps (what Chainlit's blocking sleep was for)."""

from __future__ import annotations

import importlib
import time
from typing import Any

import pytest

from chorus.web import chainlit_fixes


@pytest.mark.asyncio
async def test_messages_and_steps_are_made_without_a_blocking_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    chainlit_fixes.apply()
    chainlit_fixes.apply()  # applying twice changes nothing
    import chainlit as cl
    from chainlit.context import init_http_context

    init_http_context()  # what a request handler has: messages and steps need a context
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # the real module: any sleep is recorded

    messages = [cl.Message(content=f"reply {n}", author="assistant") for n in range(50)]
    steps = [cl.Step(name="tool", type="tool", thread_id="t1") for _ in range(50)]
    assert slept == []
    assert len({s.created_at for s in steps}) == 50

    # The sleep stays real for anything longer than Chainlit's millisecond.
    step_module: Any = importlib.import_module("chainlit.step")
    step_module.time.sleep(0.5)
    assert slept == [0.5]
    assert messages[0].content == "reply 0"


def test_timestamps_strictly_increase_and_sort_as_text() -> None:
    stamps = [chainlit_fixes.utc_now() for _ in range(2_000)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(s.endswith("Z") and len(s) == len("2026-11-30T07:00:00.000000Z") for s in stamps)
