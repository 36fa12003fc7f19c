"""ChorusModelClient over real HTTP (litellm -> a fake OpenAI server on 127.0.0.1) and over local models.

Nothing here leaves the machine: every test runs under ``loopback_only()``,
which refuses name lookups and connections to anything but loopback.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import FunctionTool
from fake_openai import FakeOpenAI, FakeToolCall, loopback_only

import chorus  # noqa: F401  (sets the offline switches before anything imports litellm)
from chorus.models import (
    CallRecord,
    ChorusModelClient,
    ModelError,
    ModelReply,
    ModelRequestRefused,
    OfflineModel,
    ScriptedModel,
    ScriptExhausted,
    ToolCall,
    scripted_model,
    tool_call,
    validate_model,
)
from chorus.models.local import split_tokens

MODEL = "openai/fake-model"
KEY = "sk-test"
# litellm retries 5xx/429 itself (three requests and about 2 s of back-off); one attempt keeps tests fast.
NO_RETRY = {"num_retries": 0}

USER = [UserMessage(content="Say hello", source="user")]

pytestmark = pytest.mark.filterwarnings(
    # litellm 1.105 reads pydantic's model_fields on instances; not ours to fix.
    "ignore:Accessing the 'model_:DeprecationWarning",
)


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network() -> Iterator[list[str]]:
    """Every test: only loopback; yields the refused attempts."""
    with loopback_only() as blocked:
        yield blocked
    assert not blocked, f"a test tried to leave the machine: {blocked}"


TRANSPORT = {"fast_path": True}


@pytest.fixture(autouse=True, params=["openai-client", "litellm"])
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test of a real model client runs on both transports: the ``openai`` client (Chorus's
    fast path for OpenAI-compatible servers) and litellm's (every other provider)."""
    TRANSPORT["fast_path"] = request.param == "openai-client"
    yield request.param
    TRANSPORT["fast_path"] = True


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def scripted() -> Iterator[ScriptedModel]:
    """The process-wide scripted model, clean before and after the test."""
    scripted_model.reset()
    yield scripted_model
    scripted_model.reset()


def client_for(server: FakeOpenAI, **kwargs: Any) -> ChorusModelClient:
    return ChorusModelClient(MODEL, api_base=server.url, api_key=KEY, **{**TRANSPORT, **kwargs})


async def collect(stream: Any) -> tuple[list[str], list[CreateResult]]:
    chunks: list[str] = []
    results: list[CreateResult] = []
    async for item in stream:
        if isinstance(item, CreateResult):
            results.append(item)
        else:
            assert not results, "a chunk came after the CreateResult"
            assert isinstance(item, str)
            chunks.append(item)
    return chunks, results


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


ADD_TOOL = FunctionTool(add, description="Add two integers.", name="add")


# -- litellm over real HTTP: text ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_streams_text_chunks_then_one_result(fake: FakeOpenAI) -> None:
    fake.queue_text("Hello there, how are you today?", usage=(21, 8))
    records: list[CallRecord] = []
    client = client_for(fake, label="assistant", on_call=records.append)

    chunks, results = await collect(client.create_stream(USER))

    # The first chunk at once; later ones that arrived together may come merged (_coalesced).
    assert chunks[0] == "Hello"
    assert merges_of(chunks, ["Hello", " there,", " how", " are", " you", " today?"])
    assert len(results) == 1
    result = results[0]
    assert result.content == "".join(chunks) == "Hello there, how are you today?"
    assert result.finish_reason == "stop"
    assert result.cached is False
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (21, 8)
    assert client.actual_usage() == result.usage
    assert client.total_usage() == result.usage

    assert len(records) == 1 and client.calls == records
    record = records[0]
    assert (record.label, record.model) == ("assistant", MODEL)
    assert (record.prompt_tokens, record.completion_tokens) == (21, 8)
    assert record.finish_reason == "stop"
    assert record.first_chunk_s is not None and 0 <= record.first_chunk_s <= record.latency_s
    assert record.cost is None  # litellm has no price for fake-model

    body = fake.last_request
    assert body["model"] == "fake-model"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "Say hello", "name": "user"}]
    assert "tools" not in body and "tool_choice" not in body
    assert fake.headers[-1]["authorization"] == f"Bearer {KEY}"
    assert fake.paths[-1] == "/v1/chat/completions"


@pytest.mark.asyncio
async def test_create_accumulates_usage_and_prices_known_models(fake: FakeOpenAI) -> None:
    fake.queue_text("One.", usage=(10, 2)).queue_text("Two.", usage=(30, 4))
    client = ChorusModelClient("openai/gpt-4o-mini", api_base=fake.url, api_key=KEY, **TRANSPORT)

    first = await client.create(USER)
    second = await client.create([*USER, AssistantMessage(content="One.", source="assistant"),
                                  UserMessage(content="Again", source="user")])

    assert (first.content, second.content) == ("One.", "Two.")
    assert (client.actual_usage().prompt_tokens, client.actual_usage().completion_tokens) == (30, 4)
    assert (client.total_usage().prompt_tokens, client.total_usage().completion_tokens) == (40, 6)
    assert all(record.cost is not None and record.cost > 0 for record in client.calls)
    assert fake.requests[1]["messages"][1] == {"role": "assistant", "content": "One."}


@pytest.mark.asyncio
async def test_json_output_asks_for_a_json_object(fake: FakeOpenAI) -> None:
    fake.queue_text('{"ok": true}')
    result = await client_for(fake).create(USER, json_output=True)
    assert json.loads(str(result.content)) == {"ok": True}
    assert fake.last_request["response_format"] == {"type": "json_object"}


# -- litellm over real HTTP: tools -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_streamed_tool_call_arguments_are_joined(fake: FakeOpenAI) -> None:
    arguments = {"a": 1234, "b": 5678}
    fake.queue_tool_call("add", arguments, id="call_add_1", pieces=4, usage=(50, 12))
    records: list[CallRecord] = []
    client = client_for(fake, on_call=records.append)

    chunks, [result] = await collect(client.create_stream(USER, tools=[ADD_TOOL]))

    assert chunks == []
    assert result.finish_reason == "function_calls"
    assert result.content == [FunctionCall(id="call_add_1", name="add", arguments=json.dumps(arguments))]
    assert json.loads(result.content[0].arguments) == arguments
    assert result.thought is None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (50, 12)
    assert records[0].finish_reason == "function_calls"

    body = fake.last_request
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two integers.",
                "parameters": ADD_TOOL.schema["parameters"],
            },
        }
    ]
    assert body["tools"][0]["function"]["parameters"]["required"] == ["a", "b"]
    assert body["tool_choice"] == "auto"


@pytest.mark.asyncio
async def test_several_tool_calls_after_some_text(fake: FakeOpenAI) -> None:
    fake.queue_tool_calls(
        [FakeToolCall("add", {"a": 1, "b": 2}, id="call_1", pieces=2),
         FakeToolCall("add", '{"a": 3, "b": 4}', id="call_2", pieces=5)],
        text="Let me add both.",
    )
    chunks, [result] = await collect(client_for(fake).create_stream(USER, tools=[ADD_TOOL.schema]))

    assert "".join(chunks) == "Let me add both."
    assert result.thought == "Let me add both."
    assert result.content == [
        FunctionCall(id="call_1", name="add", arguments='{"a": 1, "b": 2}'),
        FunctionCall(id="call_2", name="add", arguments='{"a": 3, "b": 4}'),
    ]


@pytest.mark.asyncio
async def test_tool_choice_variants_are_sent(fake: FakeOpenAI) -> None:
    client = client_for(fake)
    fake.queue_tool_call("add", {"a": 1, "b": 1})
    await client.create(USER, tools=[ADD_TOOL], tool_choice=ADD_TOOL)
    assert fake.last_request["tool_choice"] == {"type": "function", "function": {"name": "add"}}

    fake.queue_tool_call("add", {"a": 1, "b": 1})
    await client.create(USER, tools=[ADD_TOOL], tool_choice="required")
    assert fake.last_request["tool_choice"] == "required"

    fake.queue_text("No tools.")
    await client.create(USER, tools=[ADD_TOOL], tool_choice="none")
    assert fake.last_request["tool_choice"] == "none"


@pytest.mark.asyncio
async def test_tool_conversation_is_sent_as_openai_messages(fake: FakeOpenAI) -> None:
    fake.queue_text("1 + 2 is 3 and 3 + 4 is 7.")
    conversation: list[LLMMessage] = [
        SystemMessage(content="You add numbers."),
        UserMessage(content="Add 1+2 and 3+4", source="user"),
        UserMessage(content="I can help.", source="math agent!"),
        AssistantMessage(
            content=[FunctionCall(id="call_1", name="add", arguments='{"a": 1, "b": 2}'),
                     FunctionCall(id="call_2", name="add", arguments='{"a": 3, "b": 4}')],
            thought="Adding both.",
            source="assistant",
        ),
        FunctionExecutionResultMessage(content=[
            FunctionExecutionResult(call_id="call_1", name="add", content="3", is_error=False),
            FunctionExecutionResult(call_id="call_2", name="add", content="7", is_error=False),
        ]),
    ]

    result = await client_for(fake).create(conversation, tools=[ADD_TOOL])

    assert result.content == "1 + 2 is 3 and 3 + 4 is 7."
    sent = fake.last_request["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "user", "assistant", "tool", "tool"]
    assert sent[0]["content"] == "You add numbers."
    assert sent[1]["name"] == "user"
    assert sent[2]["name"] == "math_agent_"  # OpenAI names allow [a-zA-Z0-9_-] only
    assistant = sent[3]
    assert assistant["content"] == "Adding both."
    assert assistant["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}},
        {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": '{"a": 3, "b": 4}'}},
    ]
    assert [(m["tool_call_id"], m["content"]) for m in sent[4:]] == [("call_1", "3"), ("call_2", "7")]


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "message"),
    [(500, "the fake provider broke"), (401, "Incorrect API key provided: sk-test")],
)
async def test_provider_http_error_becomes_model_error(fake: FakeOpenAI, status: int, message: str) -> None:
    fake.queue_error(status, message)
    records: list[CallRecord] = []
    client = client_for(fake, on_call=records.append)

    started = time.perf_counter()
    with pytest.raises(ModelError) as caught:
        await client.create(USER, extra_create_args=NO_RETRY)

    assert time.perf_counter() - started < 5
    text = str(caught.value)
    assert text.startswith(f"model {MODEL!r} failed: ")
    assert message in text
    assert "\n" not in text and len(text) <= 600
    assert not isinstance(caught.value, ModelRequestRefused)
    assert len(fake.requests) == 1
    assert records == [] and client.calls == []


@pytest.mark.asyncio
async def test_error_in_the_middle_of_a_stream_becomes_model_error(fake: FakeOpenAI) -> None:
    fake.queue_text("one two three four", stream_error="the stream broke", stream_error_after=2)
    chunks: list[str] = []
    with pytest.raises(ModelError, match=r"failed while streaming.*the stream broke"):
        async for item in client_for(fake).create_stream(USER, extra_create_args=NO_RETRY):
            assert isinstance(item, str)
            chunks.append(item)
    assert "".join(chunks) == "one two"


# -- cancellation ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelling_the_token_while_the_provider_is_slow_ends_the_call(fake: FakeOpenAI) -> None:
    fake.queue_text("one two three four", chunk_delay=30)
    token = CancellationToken()
    received: list[str | CreateResult] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for item in client_for(fake).create_stream(USER, cancellation_token=token):
            received.append(item)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 10)
    await asyncio.sleep(0.05)  # the client is now waiting for the server's next chunk
    started = time.perf_counter()
    token.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert time.perf_counter() - started < 2
    assert received == ["one"]
    # The HTTP stream was closed, not left open until the server's next chunk.
    assert await asyncio.to_thread(fake.wait_for_disconnect, 1, 2)


@pytest.mark.asyncio
async def test_an_already_cancelled_token_cancels_the_call(fake: FakeOpenAI) -> None:
    fake.queue_text("never read")
    token = CancellationToken()
    token.cancel()

    async def call() -> None:
        await client_for(fake).create(USER, cancellation_token=token)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.create_task(call()), 2)
    # litellm created its request coroutine before the cancellation reached it: drop it quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()


@pytest.mark.asyncio
async def test_a_cancelled_token_does_not_cancel_the_caller_after_the_call(fake: FakeOpenAI) -> None:
    fake.queue_text("All done.")
    token = CancellationToken()
    result = await client_for(fake).create(USER, cancellation_token=token)
    assert result.content == "All done."
    token.cancel()  # the token outlives the call; it must not cancel this task now
    await asyncio.sleep(0.01)
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_cancelling_the_token_between_chunks_ends_the_call_promptly(fake: FakeOpenAI) -> None:
    fake.queue_text("one two three four", chunk_delay=1.0)
    token = CancellationToken()

    async def consume() -> None:
        async for _ in client_for(fake).create_stream(USER, cancellation_token=token):
            token.cancel()  # e.g. the user pressed Stop while this chunk was being shown

    started = time.perf_counter()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(consume())
    assert time.perf_counter() - started < 0.5


@pytest.mark.asyncio
async def test_closing_the_stream_early_closes_the_http_response(fake: FakeOpenAI) -> None:
    fake.queue_text("one two three four", chunk_delay=30)
    records: list[CallRecord] = []
    stream = client_for(fake, on_call=records.append).create_stream(USER)
    assert await stream.__anext__() == "one"
    await stream.aclose()  # type: ignore[attr-defined]
    assert await asyncio.to_thread(fake.wait_for_disconnect, 1, 0.5)
    # The provider bills what it began to say: the cut-off call is still reported, as an estimate.
    assert [(r.finish_reason, r.completion_tokens) for r in records] == [("cancelled", 1)]


# -- the no-real-model guard -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("model", "api_base"),
    [("gpt-4o-mini", None), (MODEL, "https://api.openai.com/v1"), (MODEL, "http://10.0.0.5:8000/v1"),
     (MODEL, "http://127.0.0.1.example.com/v1")],
)
async def test_forbid_real_models_refuses_non_loopback(no_network: list[str], model: str,
                                                       api_base: str | None) -> None:
    client = ChorusModelClient(model, api_base=api_base, api_key=KEY, forbid_real_models=True, **TRANSPORT)
    with pytest.raises(ModelRequestRefused, match="CHORUS_FORBID_REAL_MODELS"):
        await client.create(USER)
    assert no_network == []  # refused before any lookup or connection
    assert client.calls == []


@pytest.mark.asyncio
async def test_forbid_real_models_allows_the_loopback_fake_server(fake: FakeOpenAI) -> None:
    fake.queue_text("Local is fine.")
    result = await client_for(fake, forbid_real_models=True).create(USER)
    assert result.content == "Local is fine."
    assert len(fake.requests) == 1


@pytest.mark.asyncio
async def test_forbid_real_models_cannot_be_bypassed_by_extra_create_args(fake: FakeOpenAI,
                                                                           no_network: list[str]) -> None:
    client = client_for(fake, forbid_real_models=True)
    try:
        with pytest.raises(ModelRequestRefused):
            await client.create(USER, extra_create_args={"api_base": "http://10.0.0.5:8000/v1", **NO_RETRY})
    finally:
        attempts = list(no_network)
        no_network.clear()  # reported here rather than by the fixture's teardown
    assert attempts == []


# -- the wire path end to end through an AutoGen agent ---------------------------------------------


@pytest.mark.asyncio
async def test_assistant_agent_streams_and_calls_a_tool_over_http(fake: FakeOpenAI) -> None:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.base import TaskResult
    from autogen_agentchat.messages import (
        ModelClientStreamingChunkEvent,
        TextMessage,
        ToolCallExecutionEvent,
        ToolCallRequestEvent,
    )

    fake.queue_tool_call("add", {"a": 2, "b": 3}, id="call_sum", pieces=3)
    fake.queue_text("The sum of 2 and 3 is 5.")
    client = client_for(fake, label="assistant")
    agent = AssistantAgent("assistant", model_client=client, tools=[ADD_TOOL], model_client_stream=True,
                           reflect_on_tool_use=True, system_message="You add numbers.")

    events = [event async for event in agent.run_stream(task="What is 2 + 3?")]

    kinds = [type(e).__name__ for e in events]
    request = next(e for e in events if isinstance(e, ToolCallRequestEvent))
    assert request.content == [FunctionCall(id="call_sum", name="add", arguments='{"a": 2, "b": 3}')]
    execution = next(e for e in events if isinstance(e, ToolCallExecutionEvent))
    assert [(r.call_id, r.content, r.is_error) for r in execution.content] == [("call_sum", "5", False)]
    chunks = [e for e in events if isinstance(e, ModelClientStreamingChunkEvent)]
    assert "".join(c.content for c in chunks) == "The sum of 2 and 3 is 5."
    assert len(chunks) > 1
    final = events[-2]
    assert isinstance(final, TextMessage), kinds
    assert final.content == "The sum of 2 and 3 is 5." and final.source == "assistant"
    assert isinstance(events[-1], TaskResult)
    assert kinds.index("ToolCallRequestEvent") < kinds.index("ToolCallExecutionEvent") < kinds.index(
        "ModelClientStreamingChunkEvent")

    first, second = fake.requests
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert first["tools"][0]["function"]["name"] == "add"
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_sum"
    tool_message = second["messages"][-1]
    assert (tool_message["role"], tool_message["tool_call_id"], tool_message["content"]) == ("tool", "call_sum", "5")
    assert len(client.calls) == 2


# -- local models ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_scripted_model_streams_text_chunks(scripted: ScriptedModel) -> None:
    reply = "Hello from the script, in several chunks."
    scripted.queue(reply)
    records: list[CallRecord] = []
    client = ChorusModelClient("scripted", label="assistant", on_call=records.append, forbid_real_models=True)
    assert client.is_local

    chunks, [result] = await collect(client.create_stream(USER, tools=[ADD_TOOL]))

    assert chunks[0] == split_tokens(reply)[0] and merges_of(chunks, split_tokens(reply))
    assert result.content == "".join(chunks) == reply
    assert result.finish_reason == "stop"
    assert records[0].cost == 0.0 and records[0].finish_reason == "stop"
    request = scripted.requests[-1]
    assert request.model == "scripted"
    assert request.messages == [{"role": "user", "content": "Say hello", "name": "user"}]
    assert request.tools[0]["function"]["name"] == "add"
    assert request.tool_choice == "auto"
    assert request.hints.agent == "assistant"


@pytest.mark.asyncio
async def test_scripted_tool_call_becomes_function_calls(scripted: ScriptedModel) -> None:
    scripted.queue(tool_call("add", a=40, b=2), "It is 42.")
    client = ChorusModelClient("scripted")

    chunks, [result] = await collect(client.create_stream(USER, tools=[ADD_TOOL]))
    assert chunks == []
    assert result.finish_reason == "function_calls"
    assert isinstance(result.content, list)
    [call] = result.content
    assert isinstance(call, FunctionCall)
    assert call.name == "add" and json.loads(call.arguments) == {"a": 40, "b": 2}
    assert call.id.startswith("call_")

    follow_up = await client.create([
        *USER,
        AssistantMessage(content=[call], source="assistant"),
        FunctionExecutionResultMessage(content=[FunctionExecutionResult(call_id=call.id, name="add",
                                                                        content="42", is_error=False)]),
    ])
    assert follow_up.content == "It is 42."
    tool_message = scripted.requests[-1].messages[-1]
    assert (tool_message["role"], tool_message["tool_call_id"], tool_message["content"]) == ("tool", call.id, "42")


@pytest.mark.asyncio
async def test_own_scripted_model_with_text_and_several_tool_calls() -> None:
    model = ScriptedModel(ModelReply(text="Adding.", tool_calls=(ToolCall("add", {"a": 1, "b": 2}, id="c1"),
                                                                   ToolCall("add", {"a": 3, "b": 4}, id="c2"))),
                          lambda request: f"You said: {request.messages[-1]['content']}")
    client = ChorusModelClient("my-local-model", local=model)

    chunks, [result] = await collect(client.create_stream(USER))
    assert "".join(chunks) == "Adding." == result.thought
    assert result.content == [FunctionCall(id="c1", name="add", arguments='{"a": 1, "b": 2}'),
                              FunctionCall(id="c2", name="add", arguments='{"a": 3, "b": 4}')]
    assert (await client.create(USER)).content == "You said: Say hello"


@pytest.mark.asyncio
async def test_scripted_model_raises_when_its_queue_is_empty(scripted: ScriptedModel) -> None:
    client = ChorusModelClient("scripted", label="assistant")
    with pytest.raises(ScriptExhausted, match="no reply queued"):
        await client.create(USER)
    assert client.calls == []

    scripted.default = "Default answer."
    assert (await client.create(USER)).content == "Default answer."


@pytest.mark.asyncio
async def test_cancelling_a_slow_local_model(scripted: ScriptedModel) -> None:
    scripted.queue("one two three four five")
    scripted.token_delay = 5.0
    token = CancellationToken()

    async def consume() -> None:
        await ChorusModelClient("scripted").create(USER, cancellation_token=token)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    token.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert time.perf_counter() - started < 1


def merges_of(chunks: list[str], pieces: list[str]) -> bool:
    """Whether ``chunks`` are ``pieces`` with some neighbours joined (none split, none reordered)."""
    i = 0
    for chunk in chunks:
        joined = ""
        while i < len(pieces) and len(joined) < len(chunk):
            joined += pieces[i]
            i += 1
        if joined != chunk:
            return False
    return i == len(pieces)


@pytest.mark.asyncio
async def test_a_paced_stream_reaches_the_team_chunk_by_chunk(scripted: ScriptedModel) -> None:
    reply = "Each word arrives on its own, like a real stream."
    scripted.queue(reply)
    client = ChorusModelClient("scripted", token_delay=0.02, forbid_real_models=True)  # ~50 tokens/s
    chunks, [result] = await collect(client.create_stream(USER))
    tokens = split_tokens(reply)
    assert merges_of(chunks, tokens) and result.content == reply
    assert len(chunks) >= 0.7 * len(tokens)  # passed on as they come (a loaded machine may merge a few)


@pytest.mark.asyncio
async def test_chunks_that_wait_for_a_busy_reader_come_merged(scripted: ScriptedModel) -> None:
    """A loaded process reads late: what piled up meanwhile comes as one chunk, text intact."""
    reply = " ".join(f"word{i}" for i in range(60))
    scripted.queue(reply)
    client = ChorusModelClient("scripted", token_delay=0.001, forbid_real_models=True)
    chunks: list[str] = []
    async for item in client.create_stream(USER):
        if isinstance(item, str):
            chunks.append(item)
            await asyncio.sleep(0.02)  # the reader is slower than the model
    tokens = split_tokens(reply)
    assert chunks[0] == tokens[0]  # the first text is never held back
    assert merges_of(chunks, tokens) and len(chunks) < len(tokens) / 3


@pytest.mark.asyncio
async def test_offline_model_answers_locally() -> None:
    client = ChorusModelClient("offline", local=OfflineModel(token_delay=0), forbid_real_models=True)
    chunks, [result] = await collect(client.create_stream([UserMessage(content="hello", source="user")]))
    assert isinstance(result.content, str) and result.content.startswith("Hello!")
    assert "".join(chunks) == result.content
    assert result.usage.completion_tokens == len(split_tokens(result.content))
    assert client.model_info["function_calling"] is True
    assert client.count_tokens(USER) > 0
    assert client.remaining_tokens(USER) < 128_000


# -- validate_model ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["offline", "scripted", "gpt-4o-mini", "openai/fake-model",
                                   "anthropic/claude-3-5-haiku-latest", "ollama/llama3.1"])
def test_validate_model_accepts_local_and_litellm_models(model: str) -> None:
    assert validate_model(model) is None


@pytest.mark.parametrize("model", ["not-a-provider/xyz-model", "definitely-not-a-model"])
def test_validate_model_rejects_unknown_models(model: str) -> None:
    error = validate_model(model)
    assert error is not None
    assert error.startswith(f"Unknown model {model!r}")
    assert "offline" in error


# -- resilience: litellm's Router retries, falls back, cools a failing model down -------------------


@pytest.fixture
def fresh_routers() -> Iterator[None]:
    from chorus.models.router import forget_routers

    forget_routers()
    yield
    forget_routers()


@pytest.mark.asyncio
async def test_a_failed_call_is_retried(fake: FakeOpenAI, fresh_routers: None) -> None:
    fake.queue_error(500, "hiccup").queue_text("Hello after a retry.")
    client = client_for(fake, retries=2)
    result = await client.create(USER)
    assert result.content == "Hello after a retry." and len(fake.requests) == 2


@pytest.mark.asyncio
async def test_a_failing_model_falls_back_and_is_then_skipped_for_its_cooldown(
    fake: FakeOpenAI, fresh_routers: None
) -> None:
    records: list[CallRecord] = []
    client = client_for(fake, fallbacks=["openai/backup-model"], retries=0, allowed_fails=1, cooldown_s=60,
                        on_call=records.append)
    fake.queue_error(500, "primary down").queue_text("From the backup.")
    result = await client.create(USER)
    assert result.content == "From the backup."
    assert [r["model"] for r in fake.requests] == ["fake-model", "backup-model"]
    assert records[-1].model == "openai/backup-model"  # recorded (and priced) as the model that answered

    fake.queue_error(500, "primary still down").queue_text("Backup again.")
    assert (await client.create(USER)).content == "Backup again."
    # Failed twice within a minute (more than allowed_fails=1): the circuit is open, so the next
    # call goes straight to the backup without trying the primary.
    fake.reset()
    fake.queue_text("Straight to the backup.")
    assert (await client.create(USER)).content == "Straight to the backup."
    assert [r["model"] for r in fake.requests] == ["backup-model"]


@pytest.mark.asyncio
async def test_a_model_whose_circuit_opens_is_not_retried_further(fake: FakeOpenAI, fresh_routers: None) -> None:
    client = client_for(fake, fallbacks=["openai/backup-model"], retries=3, allowed_fails=1)
    fake.queue_error(500, "down").queue_error(500, "still down").queue_text("From the backup.")
    assert (await client.create(USER)).content == "From the backup."
    # The second failure is one too many: the rest of the retries would only wait on a model
    # that is now being skipped.
    assert [r["model"] for r in fake.requests] == ["fake-model", "fake-model", "backup-model"]


@pytest.mark.asyncio
async def test_requests_the_provider_rejects_never_open_the_circuit(fake: FakeOpenAI, fresh_routers: None) -> None:
    """A 400 is the request's fault (too long, a bad parameter), not the provider's: the model keeps
    serving the other chats, and the request is not retried."""
    client = client_for(fake, fallbacks=["openai/backup-model"], retries=2, allowed_fails=1)
    for _ in range(3):
        fake.queue_error(400, "context length exceeded").queue_text("backup")
        assert (await client.create(USER)).content == "backup"
    assert [r["model"] for r in fake.requests] == ["fake-model", "backup-model"] * 3  # no retry of a 400
    fake.reset()
    fake.queue_text("The primary, still in rotation.")
    assert (await client.create(USER)).content == "The primary, still in rotation."
    assert [r["model"] for r in fake.requests] == ["fake-model"]


@pytest.mark.parametrize(("model", "api_base", "fast"), [
    ("openai/my-model", "http://127.0.0.1:8000/v1", True),    # vLLM, llama.cpp, LM Studio, a gateway
    ("hosted_vllm/my-model", "http://127.0.0.1:8000/v1", True),
    ("custom_openai/my-model", "http://127.0.0.1:8000/v1", True),
    ("gpt-4o-mini", None, False),  # OpenAI itself: litellm knows each of its models' parameters
    ("anthropic/claude-3-5-haiku-latest", None, False),
    ("ollama/llama3.1", None, False),
])
def test_openai_compatible_servers_take_the_openai_client_and_every_other_provider_litellm(
        model: str, api_base: str | None, fast: bool) -> None:
    from chorus.models.providers import route_for

    assert route_for(model, api_base, None).fast is fast
    assert route_for(model, api_base, None, fast_path=False).fast is False  # CHORUS_MODEL_FAST_PATH=false


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["openai-client"], indirect=True)  # the fast path only
async def test_the_fast_path_streams_text_tools_and_usage_without_litellm(
        fake: FakeOpenAI, transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import litellm

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("litellm.acompletion was called on the fast path")

    monkeypatch.setattr(litellm, "acompletion", refuse)
    records: list[CallRecord] = []
    client = client_for(fake, on_call=records.append)
    fake.queue_text("Hello over the openai client.", usage=(12, 5))
    chunks, results = await collect(client.create_stream(USER))
    assert "".join(chunks) == "Hello over the openai client." and len(chunks) > 1
    assert results[0].usage.prompt_tokens == 12 and results[0].usage.completion_tokens == 5
    assert records[-1].prompt_tokens == 12 and records[-1].model == MODEL

    fake.queue_tool_call("add", {"a": 1, "b": 2})
    result = await client.create(USER, tools=[FunctionTool(add, description="Add two numbers.")])
    assert isinstance(result.content, list) and result.content[0].name == "add"
    assert json.loads(result.content[0].arguments) == {"a": 1, "b": 2}
    assert fake.requests[-1]["tools"][0]["function"]["name"] == "add"
    assert fake.requests[-1]["stream_options"] == {"include_usage": True}


@pytest.mark.asyncio
async def test_the_circuit_opens_at_the_default_allowed_fails(fake: FakeOpenAI, fresh_routers: None) -> None:
    client = client_for(fake, fallbacks=["openai/backup-model"], retries=0)  # allowed_fails=3 by default
    for _ in range(4):
        fake.queue_error(500, "primary down").queue_text("backup")
        assert (await client.create(USER)).content == "backup"
    fake.reset()
    fake.queue_text("Straight to the backup.")
    assert (await client.create(USER)).content == "Straight to the backup."
    assert [r["model"] for r in fake.requests] == ["backup-model"]


@pytest.mark.asyncio
async def test_when_every_model_fails_the_offline_model_answers_with_a_notice(
    fake: FakeOpenAI, fresh_routers: None
) -> None:
    notices: list[str] = []
    records: list[CallRecord] = []
    client = client_for(fake, fallbacks=["openai/backup-model"], retries=0, degrade_to_offline=True,
                        on_notice=notices.append, on_call=records.append)
    for _ in range(4):
        fake.queue_error(503, "overloaded")
    _chunks, results = await collect(client.create_stream([UserMessage(content="hello", source="user")]))
    assert results and "offline" in str(results[0].content).lower()
    assert len(notices) == 1 and "offline model" in notices[0] and "overloaded" in notices[0]
    assert records[-1].model == "offline" and records[-1].cost == 0.0

    # Without degradation the failure is an error, as before.
    strict = client_for(fake, fallbacks=["openai/backup-model"], retries=0)
    for _ in range(4):
        fake.queue_error(503, "overloaded")
    with pytest.raises(ModelError, match="and its fallbacks"):
        await strict.create(USER)


@pytest.mark.asyncio
async def test_a_turn_whose_providers_all_fail_is_answered_offline_with_a_notice(
    fake: FakeOpenAI, fresh_routers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chorus.events import DoneEvent, MessageEvent, NoticeEvent
    from chorus.settings import Settings
    from chorus.teams import TeamCatalog, TeamSpec
    from chorus.turn import Chorus, run_turn

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    settings = Settings(model=MODEL, model_api_base=fake.url, model_retries=0, plugins="assistant",
                        model_fast_path=TRANSPORT["fast_path"],
                        memory=False, tracing=False, offline_token_delay=0)
    base = Chorus.load(settings)
    solo = TeamSpec(name="solo", type="round_robin", members=["assistant"], default=True)
    chorus_ = Chorus(settings=settings, registry=base.registry, catalog=TeamCatalog(teams={"solo": solo}))
    for _ in range(6):
        fake.queue_error(502, "bad gateway")
    events = [e async for e in run_turn(chorus_.open_session(), "What time is it in Tokyo?")]
    notices = [e for e in events if isinstance(e, NoticeEvent) and e.code == "degraded"]
    assert len(notices) == 1 and "bad gateway" in notices[0].text
    assert any(isinstance(e, MessageEvent) and "Asia/Tokyo" in e.content for e in events)  # offline, with its tool
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.stop_reason != "error"


# -- a real selector model that cannot decide ------------------------------------------------------


def _selection_prompt(question: str) -> list[Any]:
    from chorus.teams import SELECTOR_PROMPT

    prompt = SELECTOR_PROMPT.format(
        roles="assistant: General help.\nforecaster: Tells the weather.",
        history=f"user: {question}",
        participants=str(["assistant", "forecaster"]),
    )
    return [SystemMessage(content=prompt)]


def _selector_hints() -> Any:
    from chorus import AgentSpec
    from chorus.models.local import ModelHints

    agents = {
        "assistant": AgentSpec(name="assistant", description="General help and small talk."),
        "forecaster": AgentSpec(name="forecaster", description="Tells the weather.", keywords=("weather",)),
    }
    return ModelHints(role="selector", agents=agents)


@pytest.mark.parametrize(("reply", "chosen"), [
    ("forecaster", "forecaster"),            # a clear choice is kept, even against the keywords
    ("assistant", "assistant"),
    ("I am not sure who should answer.", "forecaster"),   # no name: routed by keywords
    ("assistant or forecaster", "forecaster"),            # two names: routed by keywords
    ("meteorologist", "forecaster"),                      # not a member
    ("Forecaster.", "forecaster"),                        # AutoGen's match is case-sensitive: fixed up
    ("The assistant should answer.", "The assistant should answer."),  # AutoGen finds the name itself
])
async def test_a_selector_model_that_cannot_decide_is_routed_by_keywords(
        fake: FakeOpenAI, reply: str, chosen: str) -> None:
    fake.queue_text(reply)
    client = client_for(fake, label="selector", hints=_selector_hints())
    result = await client.create(_selection_prompt("What's the weather in Paris tomorrow?"))
    assert result.content == chosen
