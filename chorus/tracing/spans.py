"""What one turn did (:class:`TurnRecord`), and the span tree it becomes in MLflow (:func:`write_trace`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chorus.events import (
    CallRecord,
    DoneEvent,
    HandoffEvent,
    MessageEvent,
    RetrievalEvent,
    SelectionEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
)
from chorus.tracing.picture import picture_of

TURN_ID_KEY = "chorus.turn_id"
_AGENT_EVENTS = (TokenEvent, ToolCallEvent, ToolResultEvent, RetrievalEvent, MessageEvent, HandoffEvent)


@dataclass
class TurnRecord:
    """What one turn did, as seen by ``run_turn``; cheap to fill, exported later."""

    turn_id: str
    user: str
    thread: str
    team: str
    text: str
    started_ns: int
    events: list[tuple[int, TurnEvent]] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    ended_ns: int = 0
    done: DoneEvent | None = None
    _streaming: set[str] = field(default_factory=set)

    def note(self, event: TurnEvent) -> None:
        if isinstance(event, TokenEvent):
            if event.agent in self._streaming:
                return  # the first token of a reply marks when it started; the rest add nothing
            self._streaming.add(event.agent)
        elif isinstance(event, MessageEvent):
            self._streaming.discard(event.agent)
        self.events.append((time.time_ns(), event))

    def finish(self, done: DoneEvent, calls: Sequence[CallRecord]) -> None:
        self.done = done
        self.calls = list(calls)
        self.ended_ns = time.time_ns()


def write_trace(mlflow: Any, record: TurnRecord, *, experiment_id: str | None, version: str) -> None:
    """Write one turn's trace: the root span, then selections, agents, model calls, tools and
    retrievals as children, each with the wall-clock times the turn recorded."""
    from mlflow.entities import SpanStatusCode, SpanType

    done = record.done
    root = mlflow.start_span_no_context(
        "turn", span_type=SpanType.CHAIN, inputs={"message": record.text},
        attributes={"chorus.team": record.team, "chorus.user": record.user, "chorus.thread": record.thread,
                    TURN_ID_KEY: record.turn_id, "chorus.version": version},
        metadata={"mlflow.trace.user": record.user, "mlflow.trace.session": record.thread,
                  TURN_ID_KEY: record.turn_id, "chorus.team": record.team, "chorus.version": version},
        tags={"chorus.team": record.team},
        experiment_id=experiment_id, start_time_ns=record.started_ns,
    )
    calls = sorted(record.calls, key=lambda c: c.started_ns)
    used: set[int] = set()

    def call_span(parent: Any, call: CallRecord) -> None:
        used.add(id(call))
        span = mlflow.start_span_no_context(
            f"model call ({call.model})", span_type=SpanType.CHAT_MODEL, parent_span=parent,
            attributes={"mlflow.llm.model": call.model, "chorus.agent": call.label,
                        "mlflow.chat.tokenUsage": {"input_tokens": call.prompt_tokens,
                                                   "output_tokens": call.completion_tokens,
                                                   "total_tokens": call.prompt_tokens + call.completion_tokens},
                        "chorus.cost_usd": call.cost if call.cost is not None else "unknown",
                        "chorus.latency_ms": round(call.latency_s * 1000, 3),
                        "chorus.finish_reason": call.finish_reason},
            start_time_ns=call.started_ns or record.started_ns,
        )
        if call.cost is not None:
            span.set_attribute("mlflow.llm.cost", {"total_cost": call.cost})
        span.end(end_time_ns=(call.started_ns or record.started_ns) + int(call.latency_s * 1e9))

    def calls_of(label: str, until_ns: int) -> list[CallRecord]:
        return [c for c in calls if c.label == label and id(c) not in used and c.started_ns <= until_ns]

    agent_span: Any = None
    agent_name = ""
    tools: dict[str, Any] = {}
    answers: list[dict[str, str]] = []

    def close_agent(end_ns: int, output: str | None = None) -> None:
        nonlocal agent_span, agent_name
        if agent_span is None:
            return
        for call in calls_of(agent_name, end_ns):
            call_span(agent_span, call)
        for span in tools.values():
            span.end(status=SpanStatusCode.ERROR, end_time_ns=end_ns)  # a call that never returned
        tools.clear()
        agent_span.end(outputs=output, end_time_ns=end_ns)
        agent_span, agent_name = None, ""

    for at, event in record.events:
        if isinstance(event, SelectionEvent):
            close_agent(at)
            choosing = calls_of("selector", at)  # the selection began with its model call
            span = mlflow.start_span_no_context(
                "select speaker", span_type=SpanType.CHAIN, parent_span=root,
                start_time_ns=min([c.started_ns for c in choosing] + [at]))
            for call in choosing:
                call_span(span, call)
            span.end(outputs={"speaker": event.agents}, end_time_ns=at)
            continue
        if not isinstance(event, _AGENT_EVENTS):
            continue  # usage, notices, errors: the model calls and the root carry them
        agent = event.agent
        if agent != agent_name and not isinstance(event, MessageEvent):
            close_agent(at)
            agent_name = agent
            first_call = next((c.started_ns for c in calls_of(agent, at)), at)
            agent_span = mlflow.start_span_no_context(f"agent {agent}", span_type=SpanType.AGENT,
                                                      parent_span=root, start_time_ns=min(first_call, at),
                                                      attributes={"chorus.agent": agent})
        if isinstance(event, ToolCallEvent) and agent_span is not None:
            tools[event.call_id] = mlflow.start_span_no_context(
                f"tool {event.name}", span_type=SpanType.TOOL, parent_span=agent_span, start_time_ns=at,
                inputs=event.parsed_arguments(), attributes={"chorus.tool": event.name})
        elif isinstance(event, ToolResultEvent):
            span = tools.pop(event.call_id, None)
            if span is not None:
                span.end(outputs=event.result, end_time_ns=at,
                         status=SpanStatusCode.ERROR if event.is_error else SpanStatusCode.OK)
        elif isinstance(event, RetrievalEvent) and agent_span is not None:
            span = mlflow.start_span_no_context(event.kind, span_type=SpanType.RETRIEVER, parent_span=agent_span,
                                                start_time_ns=at, inputs=None)
            span.end(outputs=list(event.items), end_time_ns=at)
        elif isinstance(event, HandoffEvent) and agent_span is not None:  # a swarm's member passed it on
            span = mlflow.start_span_no_context(f"handoff to {event.target}", span_type=SpanType.CHAIN,
                                                parent_span=agent_span, start_time_ns=at,
                                                inputs={"reason": event.content},
                                                attributes={"chorus.handoff_to": event.target})
            span.end(end_time_ns=at)
            close_agent(at, f"handed to {event.target}: {event.content}")
        elif isinstance(event, MessageEvent):
            if agent_span is None or agent_name != event.agent:
                close_agent(at)
                agent_name = event.agent
                agent_span = mlflow.start_span_no_context(f"agent {event.agent}", span_type=SpanType.AGENT,
                                                          parent_span=root, start_time_ns=at,
                                                          attributes={"chorus.agent": event.agent})
            answers.append({"agent": event.agent, "content": event.content})
            close_agent(at, event.content)
    close_agent(record.ended_ns)
    for call in calls:  # model calls no event explained (e.g. a reply cut off by a stop)
        if id(call) not in used:
            call_span(root, call)
    failed = done is not None and done.stop_reason == "error"
    picture = picture_of(record.events, message=record.text)  # the page's turn map, on the trace too
    root.set_attribute("chorus.turn_map", picture.to_dict())
    root.set_attribute("chorus.turn_map_mermaid", picture.mermaid())
    root.end(
        outputs={"answers": answers, "stop_reason": done.stop_reason if done else "unknown"},
        attributes={"chorus.prompt_tokens": done.prompt_tokens if done else 0,
                    "chorus.completion_tokens": done.completion_tokens if done else 0,
                    "chorus.cost_usd": (done.cost if done and done.cost is not None else "unknown")},
        status=SpanStatusCode.ERROR if failed else SpanStatusCode.OK,
        end_time_ns=record.ended_ns,
    )

# -- reading back -------------------------------------------------------------------------
