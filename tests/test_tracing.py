"""Every turn traced in MLflow (read back with MLflow's own client); tracing never slows or breaks a turn."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_turn import EchoPlugin

from chorus.events import DoneEvent, TurnEvent
from chorus.models import scripted_model, tool_call
from chorus.settings import Settings
from chorus.teams import TeamCatalog, TeamSpec, Termination
from chorus.tracing import Tracer
from chorus.turn import Chorus, run_turn

SELECTOR = TeamSpec(name="pair", type="selector", members=["alice", "bob"], default=True,
                    termination=Termination(max_messages=3))


def traced_chorus(home: Path, **settings: Any) -> Chorus:
    cfg = Settings(model="scripted", plugins="echo", home=home, memory=False, **settings)
    base = Chorus.load(cfg, extra_plugins=[("echo", EchoPlugin())])
    return Chorus(settings=cfg, registry=base.registry, catalog=TeamCatalog(teams={"pair": SELECTOR}),
                  tracer=Tracer(cfg, "test"))


@pytest.fixture(autouse=True)
def clean_script() -> Iterator[None]:
    scripted_model.reset()
    yield
    scripted_model.reset()


async def collect(chorus: Chorus, text: str, **kw: Any) -> list[TurnEvent]:
    session = chorus.open_session(user_id="alice@example.com", thread_id="thread-42", **kw)
    return [e async for e in run_turn(session, text)]


def spans_by_name(trace: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for span in trace.data.spans:
        out.setdefault(span.name, []).append(span)
    return out


async def test_a_multi_agent_turn_with_a_tool_call_is_one_trace_with_the_right_tree(tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    chorus = traced_chorus(tmp_path)
    assert chorus.tracer is not None
    scripted_model.queue("alice", tool_call("shout", text="hello"), "Alice shouted HELLO.", "bob", "Bob agrees.")
    events = await collect(chorus, "Please shout hello")
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.messages == 2
    scripted_model.queue("bob", "A second turn.")
    await collect(chorus, "again")
    assert chorus.tracer.flush(60)

    client = MlflowClient(chorus.tracer.uri)
    experiment = client.get_experiment_by_name("chorus")
    traces = client.search_traces(locations=[experiment.experiment_id])
    assert len(traces) == 2  # exactly one per turn
    trace_id = chorus.tracer.trace_id_of(done.turn_id)
    trace = client.get_trace(trace_id)
    meta = trace.info.trace_metadata
    assert meta["mlflow.trace.user"] == "alice@example.com" and meta["mlflow.trace.session"] == "thread-42"
    assert meta["chorus.team"] == "pair" and meta["chorus.version"] == "test"

    spans = spans_by_name(trace)
    root = spans["turn"][0]
    assert root.parent_id is None and root.inputs == {"message": "Please shout hello"}
    by_id = {s.span_id: s for s in trace.data.spans}
    selections = spans["select speaker"]
    assert [s.outputs for s in selections] == [{"speaker": ["alice"]}, {"speaker": ["bob"]}]
    assert all(s.parent_id == root.span_id for s in selections)
    assert all(any(c.parent_id == s.span_id and c.span_type == "CHAT_MODEL" for c in trace.data.spans)
               for s in selections)  # each selection holds the selector's model call
    alice = spans["agent alice"][0]
    assert alice.parent_id == root.span_id and alice.outputs == "Alice shouted HELLO."
    tool = spans["tool shout"][0]
    assert by_id[tool.parent_id] is alice and tool.inputs == {"text": "hello"} and tool.outputs == "HELLO"
    calls = [s for s in trace.data.spans if s.span_type == "CHAT_MODEL" and s.parent_id == alice.span_id]
    assert len(calls) == 2  # the tool call, then the reply
    usage = calls[0].attributes["mlflow.chat.tokenUsage"]
    assert usage["input_tokens"] > 0 and calls[0].attributes["mlflow.llm.model"] == "scripted"
    assert spans["agent bob"][0].outputs == "Bob agrees."
    assert all(root.start_time_ns <= s.start_time_ns and s.end_time_ns <= root.end_time_ns
               for s in trace.data.spans)

    # A user's thumbs-up becomes MLflow feedback from that user on the turn's trace.
    assert chorus.tracer.log_feedback(done.turn_id, "alice@example.com", True, "spot on")
    feedback = mlflow.get_trace(trace_id).info.assessments
    assert [(f.name, f.value, f.source.source_id) for f in feedback] == [("user_feedback", True, "alice@example.com")]
    assert not chorus.tracer.log_feedback("no-such-turn", "alice@example.com", False)


async def test_a_failing_tool_is_an_error_span(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    chorus = traced_chorus(tmp_path)
    assert chorus.tracer is not None
    scripted_model.queue("alice", tool_call("shout", wrong="x"), "That failed.")
    events = await collect(chorus, "shout badly")
    assert chorus.tracer.flush(60)
    done = events[-1]
    assert isinstance(done, DoneEvent)
    trace = MlflowClient(chorus.tracer.uri).get_trace(chorus.tracer.trace_id_of(done.turn_id))
    tool = spans_by_name(trace)["tool shout"][0]
    assert tool.status.status_code == "ERROR"


async def test_an_unreachable_tracking_store_costs_one_warning_and_no_latency(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    chorus = traced_chorus(tmp_path, mlflow_tracking_uri="http://127.0.0.1:9")
    assert chorus.tracer is not None
    caplog.set_level(logging.WARNING, logger="chorus.tracing")
    for n in range(3):
        scripted_model.queue("alice", f"answer {n}", "bob", "and mine")
        events = await collect(chorus, f"question {n}")
        assert isinstance(events[-1], DoneEvent) and events[-1].stop_reason != "error"
    chorus.tracer.flush(60)
    warnings = [r for r in caplog.records if r.name == "chorus.tracing"]
    assert len(warnings) == 1 and "chatting is unaffected" in warnings[0].getMessage()


async def test_exporting_a_trace_never_delays_the_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chorus = traced_chorus(tmp_path)
    assert chorus.tracer is not None
    monkeypatch.setattr(chorus.tracer, "_export", lambda record: time.sleep(3))  # a very slow store
    scripted_model.queue("alice", "quick", "bob", "quick too")
    started = time.perf_counter()
    await collect(chorus, "hello")
    assert time.perf_counter() - started < 1.5


async def test_a_stopping_process_waits_a_bounded_time_for_its_traces_and_says_what_was_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    chorus = traced_chorus(tmp_path)
    assert chorus.tracer is not None
    monkeypatch.setattr(chorus.tracer, "_export", lambda record: time.sleep(2))  # a store that hangs
    for n in range(2):
        scripted_model.queue("alice", f"answer {n}", "bob", "and mine")
        await collect(chorus, f"question {n}")
    caplog.set_level(logging.WARNING, logger="chorus.tracing")
    started = time.perf_counter()
    assert not chorus.tracer.close(0.5)
    assert time.perf_counter() - started < 1.5
    assert "not yet written to MLflow" in caplog.text


def test_starting_chorus_does_not_load_mlflow() -> None:
    code = ("import sys; from chorus.turn import Chorus; from chorus.settings import Settings; "
            "c = Chorus.load(Settings(memory=False, tracing=True)); assert c.tracer is not None; "
            "print('mlflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_mlflow_http_settings_are_whole_numbers_even_when_an_operator_sets_a_fraction(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # MLflow 3.17 parses these as integers: a fraction made every request to a tracking server
    # raise ValueError, and every trace was lost.
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    from chorus.tracing import HTTP_REQUEST_DEFAULTS, http_request_settings

    for key in HTTP_REQUEST_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    http_request_settings()
    assert (MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(),
            MLFLOW_HTTP_REQUEST_TIMEOUT.get()) == (1, 1, 10)

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    caplog.set_level(logging.WARNING, logger="chorus.tracing")
    http_request_settings()
    assert MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get() == 1 and MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 30  # theirs kept
    assert [r.getMessage().split("=")[0] for r in caplog.records] == ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]


async def test_pseudonymous_ids_keep_names_out_of_traces_and_feedback(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    chorus = traced_chorus(tmp_path, pseudonymous_ids=True)
    assert chorus.tracer is not None
    scripted_model.queue("bob", "Hello.", "alice", "Hi.")
    done = (await collect(chorus, "hi"))[-1]
    assert isinstance(done, DoneEvent) and done.stop_reason != "error", done
    scripted_model.queue("bob", "Hello again.", "alice", "Hi again.")
    again = (await collect(chorus, "hi again"))[-1]
    assert isinstance(again, DoneEvent) and again.stop_reason != "error", again
    assert chorus.tracer.flush(60)
    assert chorus.tracer.log_feedback(done.turn_id, "alice@example.com", True)
    client = MlflowClient(chorus.tracer.uri)
    first = client.get_trace(chorus.tracer.trace_id_of(done.turn_id))
    second = client.get_trace(chorus.tracer.trace_id_of(again.turn_id))
    user = first.info.trace_metadata["mlflow.trace.user"]
    assert user.startswith("u-") and user == second.info.trace_metadata["mlflow.trace.user"]  # one user, one name
    feedback = [a for a in first.info.assessments if a.name == "user_feedback"]
    assert feedback and feedback[0].source.source_id == user
    # The name is nowhere in the tracking store; with another key the pseudonym differs.
    stored = (tmp_path / "mlflow.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "mlartifacts" in p.parts)
    assert user.encode() in stored and b"alice@example.com" not in stored
    other = Tracer(Settings(model="scripted", home=tmp_path / "other", pseudonymous_ids=True), "test")
    assert other.pseudonym("alice@example.com") != user
    assert Tracer(Settings(model="scripted", home=tmp_path, pseudonymous_ids=False), "t").pseudonym("x") == "x"
