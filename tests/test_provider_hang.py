"""A provider that hangs or stalls costs a user a bounded wait (issue 13, "Providers that hang or fail").

Against the fake OpenAI server's ``hang`` (accepts the request, never answers) and ``stall`` (sends
some chunks, then nothing) modes, with timeouts of a fraction of a second. Every wait is wrapped in
``asyncio.wait_for`` so that, were the bounds missing, a test fails in seconds instead of hanging
for the provider's two-minute timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from autogen_core.models import CreateResult, UserMessage
from fake_openai import FakeOpenAI, FakeResponse, FakeToolCall, loopback_only

import chorus  # noqa: F401  (sets the offline switches before anything imports litellm)
from chorus.models import CallRecord, ChorusModelClient, ModelError, ModelStalled
from chorus.models.router import forget_routers

MODEL = "openai/fake-model"
BACKUP = "openai/backup-model"
KEY = "sk-test"
HELLO = [UserMessage(content="hello", source="user")]
FIRST_BYTE = 0.5
# What litellm spends on its first failure in a process (imports, error mapping), on top of the
# configured waits; generous for a loaded 2-core machine, tiny next to the 120 s the defaults cost.
SLACK = 2.0
GIVE_UP = 15.0  # a test that waits this long has found no bound at all

pytestmark = pytest.mark.filterwarnings("ignore:Accessing the 'model_:DeprecationWarning")


@pytest.fixture(autouse=True)
def no_network() -> Iterator[None]:
    with loopback_only() as blocked:
        yield
    assert not blocked, f"a test tried to leave the machine: {blocked}"


@pytest.fixture(autouse=True)
def fresh_routers() -> Iterator[None]:
    forget_routers()  # the circuit (the routers' cooldowns) starts closed in every test
    yield
    forget_routers()


TRANSPORT = {"fast_path": True}


@pytest.fixture(autouse=True, params=["openai-client", "litellm"])
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every bound holds on both transports: the ``openai`` client (OpenAI-compatible servers) and
    litellm's (every other provider)."""
    TRANSPORT["fast_path"] = request.param == "openai-client"
    yield request.param
    TRANSPORT["fast_path"] = True


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def client_for(server: FakeOpenAI, notices: list[str] | None = None, **kwargs: Any) -> ChorusModelClient:
    options: dict[str, Any] = {"first_byte_timeout": FIRST_BYTE, "stall_timeout": 5.0, "deadline": 5.0,
                               "retries": 2, "degrade_to_offline": True, "cooldown_s": 60}
    options.update(TRANSPORT)
    options.update(kwargs)
    return ChorusModelClient(MODEL, api_base=server.url, api_key=KEY, label="assistant",
                             on_notice=None if notices is None else notices.append, **options)


async def timed(client: ChorusModelClient, **kwargs: Any) -> tuple[str, CreateResult, float]:
    """The streamed text, the result, and how long the user waited for the first text (what the
    issue measured: 366 s with the defaults); fails after GIVE_UP seconds."""
    chunks: list[str] = []
    result: CreateResult | None = None
    started = time.perf_counter()
    first_text: float | None = None

    async def consume() -> None:
        nonlocal result, first_text
        async for item in client.create_stream(HELLO, **kwargs):
            if isinstance(item, CreateResult):
                result = item
            else:
                first_text = first_text or time.perf_counter() - started
                chunks.append(item)

    await asyncio.wait_for(consume(), GIVE_UP)
    assert result is not None and first_text is not None
    return "".join(chunks), result, first_text


async def warm_up(server: FakeOpenAI) -> None:
    """An answer, a failure and the offline model once, so first-use import costs (litellm's error
    mapping, the offline model's memory modules: seconds here) are not counted as waiting."""
    plain = ChorusModelClient(MODEL, api_base=server.url, api_key=KEY, **TRANSPORT)
    server.queue_text("warm").queue_error(400, "warm")
    await plain.create(HELLO, extra_create_args={"num_retries": 0})
    with pytest.raises(ModelError):
        await plain.create(HELLO, extra_create_args={"num_retries": 0})
    await ChorusModelClient("offline").create(HELLO)
    server.reset()


# -- a provider that accepts and never answers ----------------------------------------------------


@pytest.mark.asyncio
async def test_a_hanging_provider_costs_the_first_byte_timeout_then_the_offline_model_answers_and_the_circuit_opens(
        fake: FakeOpenAI) -> None:
    await warm_up(fake)
    fake.default = FakeResponse(hang=True)  # every request hangs
    notices: list[str] = []
    records: list[CallRecord] = []
    client = client_for(fake, notices, on_call=records.append)

    text, result, waited = await timed(client)

    assert waited < FIRST_BYTE + SLACK  # the defaults held a turn for minutes
    assert text == result.content and text.startswith("Hello!")  # the offline model's greeting
    assert len(notices) == 1 and "not answering" in notices[0] and "offline model" in notices[0]
    assert f"failed: no answer within {FIRST_BYTE:g} s)" in notices[0]
    assert records[-1].model == "offline"
    # The hang opened the circuit: not retried (retries=2), the same hang would cost it again.
    assert len(fake.requests) == 1

    # The next turns, during the cooldown, skip the hanging provider at once.
    text, _result, waited = await timed(client)
    assert waited < 0.5 and text.startswith("Hello!")
    assert len(fake.requests) == 1  # the provider saw no new request
    assert len(notices) == 2 and notices[1] == notices[0]  # the same words: one notice in a turn


@pytest.mark.asyncio
async def test_a_hanging_model_falls_back_after_the_first_byte_timeout_and_is_then_skipped(fake: FakeOpenAI) -> None:
    await warm_up(fake)
    records: list[CallRecord] = []
    client = client_for(fake, fallbacks=[BACKUP], on_call=records.append)
    fake.queue_hang().queue_text("From the backup.")

    text, _result, waited = await timed(client)

    assert text == "From the backup."
    assert waited < FIRST_BYTE + SLACK
    assert [r["model"] for r in fake.requests] == ["fake-model", "backup-model"]
    assert records[-1].model == BACKUP
    assert records[-1].cost is None  # litellm has no price for it: unknown, not free

    fake.reset()
    fake.queue_text("Straight to the backup.")
    text, _result, waited = await timed(client)
    assert text == "Straight to the backup." and waited < 0.5
    assert [r["model"] for r in fake.requests] == ["backup-model"]


@pytest.mark.asyncio
async def test_the_deadline_bounds_a_call_whose_models_all_hang_whatever_the_first_byte_timeout(
        fake: FakeOpenAI) -> None:
    await warm_up(fake)
    fake.default = FakeResponse(hang=True)
    notices: list[str] = []
    # Each attempt would wait 10 s; the call as a whole may wait 1 s for its reply to begin.
    client = client_for(fake, notices, fallbacks=[BACKUP], first_byte_timeout=10.0, deadline=1.0)

    text, _result, waited = await timed(client)

    assert 0.9 < waited < 1.0 + SLACK
    assert text.startswith("Hello!")
    assert len(notices) == 1 and "no answer within 1 s" in notices[0]
    # The abandoned request was closed, not left open on the provider.
    assert await asyncio.to_thread(fake.wait_for_disconnect, 1, 2)


@pytest.mark.asyncio
async def test_without_degradation_a_hang_is_a_prompt_error(fake: FakeOpenAI) -> None:
    await warm_up(fake)
    fake.default = FakeResponse(hang=True)
    client = client_for(fake, degrade_to_offline=False, retries=0)  # the plain litellm path (no router)
    started = time.perf_counter()
    with pytest.raises(ModelError, match=r"no answer within"):
        await asyncio.wait_for(client.create(HELLO), GIVE_UP)
    assert time.perf_counter() - started < 5.0 + SLACK  # at most the deadline


# -- a stream that starts and then stalls -----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("first_byte", "stall"), [(5.0, 0.5), (0.5, None)],
                         ids=["stall-timeout", "read-timeout"])
async def test_a_stream_that_stalls_mid_answer_is_cut_off_keeping_its_text(
        fake: FakeOpenAI, first_byte: float, stall: float | None) -> None:
    await warm_up(fake)
    notices: list[str] = []
    records: list[CallRecord] = []
    client = client_for(fake, notices, first_byte_timeout=first_byte, stall_timeout=stall, on_call=records.append)
    fake.queue_text("The answer begins and then", stall_after=3)

    text, result, waited = await timed(client)

    assert text == result.content == "The answer begins"
    assert waited < 0.5 + SLACK
    assert result.finish_reason == "unknown"
    assert len(notices) == 1 and "stopped sending in the middle" in notices[0] and "0.5 s" in notices[0]
    assert records[-1].completion_tokens > 0  # billed by the provider: estimated, recorded
    assert len(fake.requests) == 1  # what was shown is kept, not asked again


@pytest.mark.asyncio
async def test_a_stream_that_stalls_before_any_text_is_answered_by_the_offline_model(fake: FakeOpenAI) -> None:
    await warm_up(fake)
    notices: list[str] = []
    client = client_for(fake, notices, first_byte_timeout=5.0, stall_timeout=0.5)
    fake.queue_text("never sent", stall_after=0)  # the role chunk, then nothing

    text, _result, waited = await timed(client)

    assert text.startswith("Hello!") and waited < 0.5 + SLACK
    assert len(notices) == 1 and "offline model" in notices[0] and "sent nothing for 0.5 s" in notices[0]


@pytest.mark.asyncio
async def test_a_tool_call_that_stalls_half_way_is_an_error_not_a_broken_call(fake: FakeOpenAI) -> None:
    await warm_up(fake)
    client = client_for(fake, first_byte_timeout=5.0, stall_timeout=0.5)
    # The role chunk, the call's name, the first of three pieces of its arguments; then nothing.
    fake.queue(FakeResponse(tool_calls=[FakeToolCall("add", {"a": 1, "b": 2}, pieces=3)], stall_after=2))
    started = time.perf_counter()
    with pytest.raises(ModelStalled, match=r"sent nothing for 0.5 s"):
        await asyncio.wait_for(client.create(HELLO), GIVE_UP)
    assert time.perf_counter() - started < 0.5 + SLACK


@pytest.mark.asyncio
async def test_a_slow_but_steady_stream_is_not_cut(fake: FakeOpenAI) -> None:
    """Chunks 0.3 s apart, under a 0.5 s stall timeout: the whole reply, however long it takes in all."""
    await warm_up(fake)
    notices: list[str] = []
    client = client_for(fake, notices, first_byte_timeout=0.5, stall_timeout=0.5, deadline=0.5)
    fake.queue_text("one two three four five", chunk_delay=0.3)
    started = time.perf_counter()
    text, result, _first = await timed(client)
    assert text == "one two three four five" and result.finish_reason == "stop"
    assert time.perf_counter() - started > 1.0 and notices == []


# -- a whole turn, through the settings -------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_turn_against_a_hanging_provider_is_answered_offline_within_the_bound(
        fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    from chorus.events import DoneEvent, MessageEvent, NoticeEvent
    from chorus.settings import Settings
    from chorus.teams import TeamCatalog, TeamSpec
    from chorus.turn import Chorus, run_turn

    await warm_up(fake)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    fake.default = FakeResponse(hang=True)
    settings = Settings(model=MODEL, model_api_base=fake.url, plugins="assistant", memory=False, tracing=False,
                        model_fast_path=TRANSPORT["fast_path"],
                        offline_token_delay=0, model_first_byte_timeout=FIRST_BYTE, model_deadline=2.0)
    base = Chorus.load(settings)
    solo = TeamSpec(name="solo", type="round_robin", members=["assistant"], default=True)
    chorus_ = Chorus(settings=settings, registry=base.registry, catalog=TeamCatalog(teams={"solo": solo}))
    session = chorus_.open_session()

    async def turn(text: str) -> tuple[list[Any], float]:
        started = time.perf_counter()
        events = await asyncio.wait_for(_collect(run_turn(session, text)), GIVE_UP)
        return events, time.perf_counter() - started

    events, waited = await turn("What time is it in Tokyo?")
    assert waited < FIRST_BYTE + SLACK
    notices = [e for e in events if isinstance(e, NoticeEvent) and e.code == "degraded"]
    assert len(notices) == 1 and "offline model" in notices[0].text
    assert any(isinstance(e, MessageEvent) and "Asia/Tokyo" in e.content for e in events)
    assert isinstance(events[-1], DoneEvent) and events[-1].stop_reason != "error"
    assert len(fake.requests) == 1

    events, waited = await turn("What time is it in Paris?")
    assert waited < SLACK  # the circuit is open: straight to the offline model, no first-byte wait
    assert any(isinstance(e, MessageEvent) and "Europe/Paris" in e.content for e in events)
    assert len(fake.requests) == 1


async def _collect(stream: Any) -> list[Any]:
    return [event async for event in stream]
