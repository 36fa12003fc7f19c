"""The baseline for ``bench/load.py``: AutoGen in Chainlit, written the way AutoGen's docs show.

This follows AutoGen's Chainlit sample (``python/samples/agentchat_chainlit/app_team.py``): in
``on_chat_start`` the model client is made from ``model_config.yaml`` with
``ChatCompletionClient.load_component`` (here AutoGen's own ``OpenAIChatCompletionClient``,
``autogen-ext[openai]``, pointed at the benchmark's OpenAI-compatible provider) and the team is
kept in the user session; ``on_message`` runs ``team.run_stream`` and sends one
``stream_token`` per model chunk; AutoGen's event logging is left at its defaults.

Three deliberate differences from the sample, so that both servers do the same work and the
benchmark can check every token: the team ends after one reply from each of its two agents
(``MaxMessageTermination(3)``, like Chorus's Panel team; the sample waits for the critic to say
APPROVE, which a fixed reply never does), the streamed message starts empty (the sample puts
``"critic: "`` in front), and the agents are called ``assistant`` and ``guide``.

With ``BENCH_BASELINE_SCRIPTED=1`` the model is ``ZeroLatencyClient`` instead (no HTTP, a fixed
reply streamed at once; ``zero_latency.py``), the scripted-model comparison.

Kept in ``bench/`` for the benchmark only; it is not part of Chorus. ``bench/load.py`` runs it
as ``chainlit run bench/baseline/app.py --headless`` in a directory where it wrote
``model_config.yaml``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import cast

import chainlit as cl
import yaml
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import ModelClientStreamingChunkEvent, TextMessage
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient

SCRIPTED = os.environ.get("BENCH_BASELINE_SCRIPTED") == "1"
if SCRIPTED:
    sys.path.insert(0, str(Path(__file__).parent))
    from zero_latency import ZeroLatencyClient


def model_client() -> ChatCompletionClient:
    if SCRIPTED:
        return ZeroLatencyClient()
    # As the sample does: the model's configuration from model_config.yaml in the working directory.
    with open("model_config.yaml", encoding="utf-8") as f:
        model_config = yaml.safe_load(f)
    return ChatCompletionClient.load_component(model_config)


@cl.on_chat_start  # type: ignore[arg-type]
async def start_chat() -> None:
    client = model_client()
    assistant = AssistantAgent(name="assistant", model_client=client,
                               system_message="You are a helpful assistant.", model_client_stream=True)
    guide = AssistantAgent(name="guide", model_client=client,
                           system_message="You explain how to use the product.", model_client_stream=True)
    # The user's message and one reply from each member, like Chorus's panel team.
    team = RoundRobinGroupChat([assistant, guide], termination_condition=MaxMessageTermination(3))
    cl.user_session.set("team", team)


@cl.on_message  # type: ignore[arg-type]
async def chat(message: cl.Message) -> None:
    team = cast(RoundRobinGroupChat, cl.user_session.get("team"))
    streaming_response: cl.Message | None = None
    async for msg in team.run_stream(task=[TextMessage(content=message.content, source="user")],
                                     cancellation_token=CancellationToken()):
        if isinstance(msg, ModelClientStreamingChunkEvent):
            if streaming_response is None:
                streaming_response = cl.Message(content="", author=msg.source)
            await streaming_response.stream_token(msg.content)
        elif streaming_response is not None:
            await streaming_response.send()
            streaming_response = None
        elif isinstance(msg, TaskResult):
            await cl.Message(content=f"Task terminated: {msg.stop_reason}", author="system").send()
