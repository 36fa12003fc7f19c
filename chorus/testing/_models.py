"""Models a test owns: a local model registered under a name of its own, and the offline model asked directly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from chorus.models.local import (
    LocalModel,
    ModelHints,
    ModelReply,
    ModelRequest,
    is_local_model,
    register_local_model,
    unregister_local_model,
)
from chorus.models.scripted import ScriptedModel
from chorus.settings import OFFLINE_MODEL

if TYPE_CHECKING:
    from chorus.turn import Chorus


def unique_model_name(model: LocalModel) -> str:
    """A model string no other registered model has: ``scripted-<hex>`` for a ScriptedModel, else ``local-<hex>``."""
    prefix = "scripted" if isinstance(model, ScriptedModel) else "local"
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextmanager
def registered_model(model: LocalModel, name: str | None = None) -> Iterator[str]:
    """Register ``model`` as a local model for the ``with`` block; yields its model string.

    A Chorus whose ``Settings(model=...)`` (or a team's or agent's ``model``) is that string sends
    every call to ``model``, and to no other test's. ``name`` defaults to a fresh
    :func:`unique_model_name`; a name another model already has (``offline``, ``scripted``) is refused.
    """
    name = name or unique_model_name(model)
    if is_local_model(name):
        raise ValueError(f"a local model is already registered as {name!r}; choose another name")
    register_local_model(name, lambda: model)
    try:
        yield name
    finally:
        unregister_local_model(name)


def offline_reply(chorus: Chorus, messages: str | Sequence[Mapping[str, Any]], *, agent: str) -> ModelReply:
    """What Chorus's offline model answers ``agent`` of ``chorus``, asked directly (no team, no turn).

    ``messages`` is the user's text, or the chat-completions messages that follow the agent's system
    message (user, assistant with ``tool_calls``, and ``tool`` results, to see how it reports a
    result). The model is shown the agent's tools as a provider would be. The reply has ``.text`` and
    ``.tool_calls`` (each with ``.name``, ``.arguments`` and ``.id``): what the agent would say or call.
    """
    from chorus.models._convert import to_openai_tools
    from chorus.models.offline import OfflineModel

    spec = chorus.registry.agents.get(agent)
    if spec is None:
        raise KeyError(f"no agent {agent!r} was loaded; the agents are: {', '.join(chorus.registry.agents)}")
    tools = {name: chorus.registry.tools[name] for name in spec.tools}
    history = [{"role": "user", "content": messages, "name": "user"}] if isinstance(messages, str) else messages
    request = ModelRequest(
        model=OFFLINE_MODEL,
        messages=[{"role": "system", "content": spec.system_message}, *(dict(m) for m in history)],
        tools=to_openai_tools([tool.to_autogen() for tool in tools.values()]),
        tool_choice="auto",
        hints=ModelHints(role="agent", agent=spec.name, agents={spec.name: spec}, tools=tools),
    )
    return OfflineModel().answer(request)
