"""Chorus's test kit for plugin authors (and Chorus's own tests): the public API of testing.

Installed with Chorus, it is also a pytest plugin (entry point ``pytest11``: ``chorus``) that
gives every test the ``make_chorus`` fixture, a :class:`ChorusFactory`::

    from chorus import TeamSpec
    from chorus.testing import ScriptedModel, last_reply, run, tool_call

    import chorus_weather


    async def test_forecaster(make_chorus):
        model = ScriptedModel(tool_call("forecast", city="Lisbon"), "Sunny tomorrow!")
        chorus = make_chorus(plugins=[chorus_weather], model=model)
        events = await run(chorus, "What's the weather in Lisbon?")
        assert last_reply(events).content == "Sunny tomorrow!"

The Chorus it loads lives on a temporary home, with memory and tracing off unless asked, only
the plugins asked for, and real model calls refused. A :class:`ScriptedModel` belongs to the
test that made it: ``make_chorus`` registers it under a name of its own and unregisters it
afterwards. Everything in ``__all__`` is promised to stay; see docs/plugins.md, "Testing your plugin".

The names load on first use, so that loading the pytest plugin imports neither AutoGen nor litellm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chorus.events import (
        ApprovalDoneEvent,
        ApprovalEvent,
        DoneEvent,
        ErrorEvent,
        HandoffEvent,
        MessageEvent,
        NoticeEvent,
        ProgressEvent,
        RetrievalEvent,
        SelectionEvent,
        TokenEvent,
        ToolCallEvent,
        ToolResultEvent,
        TurnEvent,
        UsageEvent,
    )
    from chorus.models.local import ModelReply, ModelRequest, ToolCall
    from chorus.models.scripted import ScriptedModel, ScriptExhausted, tool_call
    from chorus.testing._events import done, events_of, last_reply, replies, run, visible_text
    from chorus.testing._factory import ChorusFactory
    from chorus.testing._models import offline_reply, registered_model
    from chorus.testing._stores import checkpoint_store
    from chorus.turn import ChatSession, Chorus, run_turn

_WHERE = {
    "chorus.events": ("ApprovalDoneEvent", "ApprovalEvent", "DoneEvent",
                      "ErrorEvent", "HandoffEvent", "MessageEvent", "NoticeEvent", "ProgressEvent",
                      "RetrievalEvent", "SelectionEvent", "TokenEvent", "ToolCallEvent", "ToolResultEvent", "TurnEvent",
                      "UsageEvent"),
    "chorus.models.local": ("ModelReply", "ModelRequest", "ToolCall"),
    "chorus.models.scripted": ("ScriptExhausted", "ScriptedModel", "tool_call"),
    "chorus.testing._events": ("done", "events_of", "last_reply", "replies", "run", "visible_text"),
    "chorus.testing._factory": ("ChorusFactory",),
    "chorus.testing._stores": ("checkpoint_store",),
    "chorus.testing._models": ("offline_reply", "registered_model"),
    "chorus.turn": ("ChatSession", "Chorus", "run_turn"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'chorus.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


__all__ = [
    "ApprovalDoneEvent",
    "ApprovalEvent",
    "ChatSession",
    "Chorus",
    "ChorusFactory",
    "DoneEvent",
    "ErrorEvent",
    "HandoffEvent",
    "MessageEvent",
    "ModelReply",
    "ModelRequest",
    "NoticeEvent",
    "ProgressEvent",
    "RetrievalEvent",
    "ScriptExhausted",
    "ScriptedModel",
    "SelectionEvent",
    "TokenEvent",
    "ToolCall",
    "ToolCallEvent",
    "ToolResultEvent",
    "TurnEvent",
    "UsageEvent",
    "checkpoint_store",
    "done",
    "events_of",
    "last_reply",
    "offline_reply",
    "registered_model",
    "replies",
    "run",
    "run_turn",
    "tool_call",
    "visible_text",
]
