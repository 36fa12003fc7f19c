"""MLflow tracing: exactly one trace per turn, built off the turn's path.

MLflow's AutoGen autolog records nothing for streaming teams, and litellm's gives one loose trace
per model call. Chorus records what it already sees (the turn's events and each model call's
:class:`~chorus.models.CallRecord`, with wall-clock times) while the turn runs, which costs a
list append per event, and after the turn a single worker thread writes the whole span tree to
MLflow with the recorded start and end times:

    turn (CHAIN; trace metadata: user, session = thread, team, app version, turn id)
    ├── select speaker (CHAIN) ── selector model call (CHAT_MODEL: tokens, cost, model, latency)
    ├── agent <name> (AGENT) ─┬── model call (CHAT_MODEL)
    │                         ├── tool <name> (TOOL: arguments, result, error)
    │                         └── memory (RETRIEVER: what was recalled)
    └── ...

So tracing adds no latency to a turn, and an unreachable or broken tracking store costs one
warning, after which exports pause for a while (a circuit breaker) instead of failing again
every turn.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chorus.events import (
    CallRecord,
    DoneEvent,
    MessageEvent,
    RetrievalEvent,
    SelectionEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
)
from chorus.settings import Settings

log = logging.getLogger(__name__)

EXPERIMENT = "chorus"
TURN_ID_KEY = "chorus.turn_id"
PAUSE_AFTER_FAILURE_S = 60.0
# At shutdown, how long the last turns' traces may hold a process up (``trace_flush_timeout``
# overrides it): enough for a few turns to a loaded server, short of systemd's 90 s stop timeout.
EXIT_FLUSH_TIMEOUT_S = 15.0
_QUEUE_LIMIT = 1000  # turns waiting for export; beyond it traces are dropped, never the chat slowed
# MLflow's HTTP client settings, as Chorus wants them: a server that is down should cost seconds,
# not MLflow's default minute of retries, and one warning of ours rather than urllib3's per retry.
# MLflow 3.17 parses each as an *integer*: "0.5" made every request to a tracking server raise ValueError.
HTTP_REQUEST_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def http_request_settings() -> dict[str, str]:
    """Fill in :data:`HTTP_REQUEST_DEFAULTS` and make each value one MLflow can parse; the values used.

    An operator's own value wins, but a non-integer (``0.5``) would break every request to the
    server, so it is rounded up to a whole number, with a warning naming the variable.
    """
    used: dict[str, str] = {}
    for key, default in HTTP_REQUEST_DEFAULTS.items():
        value = os.environ.setdefault(key, default).strip()
        try:
            int(value)
        except ValueError:
            try:
                fixed = str(max(0, math.ceil(float(value))))
            except ValueError:
                fixed = default
            log.warning("%s=%r is not a whole number, which MLflow requires (every request to the tracking "
                        "server would fail): using %s", key, value, fixed)
            os.environ[key] = value = fixed
        used[key] = value
    return used


UI_RECORD = "mlflow-ui.json"  # in the data directory: where a running `chorus mlflow` serves the UI
_EVERY_INTERFACE = ("", "0.0.0.0", "::", "[::]")


@dataclass(frozen=True)
class ServedUI:
    """An MLflow UI that ``chorus mlflow`` is serving: what :func:`record_ui` wrote."""

    host: str
    port: int
    pid: int
    machine: str

    def url(self, request_host: str | None = None) -> str:
        host = self.host
        if host in _EVERY_INTERFACE:  # reachable under whatever name the browser reached Chorus by
            host = request_host or "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        return f"http://{host}:{self.port}"


def record_ui(home: Path, host: str, port: int) -> Path:
    """Note in the data directory that this process serves the MLflow UI at ``host:port``; the
    chat server's trace links read it (:meth:`Tracer.ui_url`). :func:`forget_ui` removes it."""
    home = home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    path = home / UI_RECORD
    partial = path.with_name(f".{UI_RECORD}.{os.getpid()}")
    partial.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid(),
                                   "machine": socket.gethostname()}), encoding="utf-8")
    partial.replace(path)  # whole or not at all, for a reader at the same moment
    return path


def forget_ui(home: Path) -> None:
    """Remove this process's record of the UI it served (a newer ``chorus mlflow``'s stays)."""
    path = home.expanduser() / UI_RECORD
    served = recorded_ui(home, check_alive=False)
    if served is not None and served.pid == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def recorded_ui(home: Path, *, check_alive: bool = True) -> ServedUI | None:
    """The MLflow UI a ``chorus mlflow`` records as serving, None when there is none or its process
    has ended (a record left by a killed one is ignored; only checkable on the same machine)."""
    try:
        data = json.loads((home.expanduser() / UI_RECORD).read_text(encoding="utf-8"))
        served = ServedUI(host=str(data["host"]), port=int(data["port"]), pid=int(data["pid"]),
                          machine=str(data.get("machine", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if check_alive and served.machine == socket.gethostname() and not _alive(served.pid):
        return None
    return served


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True


def tracking_uri(settings: Settings) -> str:
    """``CHORUS_MLFLOW_TRACKING_URI``, or a SQLite store in the data directory."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return f"sqlite:///{(settings.home.expanduser() / 'mlflow.db').resolve()}"


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


class Tracer:
    """Exports turn records to MLflow from one background thread."""

    def __init__(self, settings: Settings, version: str) -> None:
        self.settings = settings
        self.version = version
        self.uri = tracking_uri(settings)
        self._queue: queue.Queue[TurnRecord | None] = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._experiment_id: str | None = None
        self._paused_until = 0.0
        self._warned = False
        self._warned_full = False
        self._closed = False
        self._exit_hook = False
        self.exported = 0

    def prepare(self) -> None:
        """Connect to the tracking store in the background (the server calls it at start-up), so the
        first turn's trace does not wait for MLflow's import and database set-up."""
        self._ensure_worker()
        self._queue.put_nowait(_CONNECT)

    def ui_url(self, request_host: str | None = None) -> str:
        """Where the MLflow UI that shows this tracer's traces is (blocking: may read a small file).

        In order: ``CHORUS_MLFLOW_UI_URL`` when set; the tracking server itself when traces go to
        one (``CHORUS_MLFLOW_TRACKING_URI=http://...`` serves its UI too); the UI a running
        ``chorus mlflow`` recorded in the data directory (:func:`record_ui`), read on every call so
        that a restart on another port is followed at once; else ``http://127.0.0.1:5000``, where
        ``chorus mlflow`` serves by default. ``request_host`` (the host name the browser used to
        reach Chorus) stands in for a UI listening on every interface (``--host 0.0.0.0``).
        """
        if "mlflow_ui_url" in self.settings.model_fields_set:
            return self.settings.mlflow_ui_url.rstrip("/")
        if self.uri.startswith(("http://", "https://")):
            return self.uri.rstrip("/")
        served = recorded_ui(self.settings.home)
        if served is not None:
            return served.url(request_host)
        return self.settings.mlflow_ui_url.rstrip("/")

    def ui_link(self, trace_id: str, base: str | None = None) -> str:
        """The MLflow UI's page of a trace; ``base`` defaults to :meth:`ui_url` (blocking)."""
        base = (base or self.ui_url()).rstrip("/")
        return (f"{base}/#/experiments/{self._experiment_id}/traces?"
                f"selectedEvaluationId={trace_id}&traceId={trace_id}")

    def begin(self, *, turn_id: str, user: str, thread: str, team: str, text: str) -> TurnRecord:
        return TurnRecord(turn_id=turn_id, user=user, thread=thread, team=team, text=text,
                          started_ns=time.time_ns())

    def submit(self, record: TurnRecord) -> None:
        """Queue a finished turn for export; never blocks."""
        if self._closed or time.monotonic() < self._paused_until:
            return
        self._ensure_worker()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            # The store cannot keep up: say so once (a lost trace must not go unnoticed), never block.
            (log.debug if self._warned_full else log.warning)(
                "%d traces are waiting for MLflow at %s: dropping the trace of turn %s (and others while "
                "the queue is full)", _QUEUE_LIMIT, self.uri, record.turn_id)
            self._warned_full = True

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued trace is written (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            if self._thread is None or not self._thread.is_alive():
                break  # nothing will write them (the interpreter is past its threads)
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self, timeout: float | None = None) -> bool:
        """Write the traces still queued, waiting at most ``timeout`` seconds; True when none was lost.

        Call it when the process stops (``chorus run``'s shutdown; an ``atexit`` hook calls it for
        every other process). The export thread is a daemon, so without this the last turns' traces
        die with the process. Traces still queued at the deadline are reported, once, and dropped.
        The default wait is the ``trace_flush_timeout`` setting, else :data:`EXIT_FLUSH_TIMEOUT_S`.
        """
        if timeout is None:
            configured = getattr(self.settings, "trace_flush_timeout", None)  # a setting proposed in issue 13
            timeout = EXIT_FLUSH_TIMEOUT_S if configured is None else float(configured)
        with self._lock:
            if self._closed:
                return not self._queue.unfinished_tasks
            self._closed = True
        if self._thread is None:
            return True
        done = self.flush(timeout)
        if not done:
            log.warning("stopping with %d trace(s) not yet written to MLflow at %s (waited %.0f s): they are lost",
                        self._queue.unfinished_tasks, self.uri, timeout)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # the worker returns once the queue is drained
        return done

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="chorus-tracing", daemon=True)
                self._thread.start()
                if not self._exit_hook:
                    self._exit_hook = True
                    atexit.register(_close_at_exit, weakref.ref(self))

    def _work(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is None:
                    return
                if record is _CONNECT:
                    self._mlflow()
                elif time.monotonic() >= self._paused_until:
                    self._export(record)
            except Exception as exc:
                self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
                if not self._warned:
                    self._warned = True
                    log.warning("tracing to MLflow at %s failed (%s: %s); chatting is unaffected, traces are "
                                "skipped and retried every %.0f s", self.uri, type(exc).__name__, exc,
                                PAUSE_AFTER_FAILURE_S)
                else:
                    log.debug("tracing failed again: %s", exc)
            finally:
                self._queue.task_done()

    def _mlflow(self) -> Any:
        os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")  # this thread is the async part
        http_request_settings()
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        import mlflow

        _batch_span_logging()
        # MLflow announces creating its tables and experiment at INFO on stderr: noise in the CLI.
        logging.getLogger("mlflow").setLevel(logging.WARNING)

        mlflow.set_tracking_uri(self.uri)  # process-wide in MLflow; one tracer per process in the app
        if self._experiment_id is None:
            from chorus.store.db import MIGRATION_LOCK

            with MIGRATION_LOCK:  # MLflow migrates its store with Alembic, as Chorus does
                experiment = mlflow.set_experiment(self.settings.mlflow_experiment)
            self._experiment_id = experiment.experiment_id
        return mlflow

    def _export(self, record: TurnRecord) -> None:
        _batch.spans = []  # the trace's spans go to the store in one request (see _batch_span_logging)
        try:
            self._write_trace(record)
        finally:
            _batch.spans = None

    def _write_trace(self, record: TurnRecord) -> None:
        mlflow = self._mlflow()
        from mlflow.entities import SpanStatusCode, SpanType

        done = record.done
        root = mlflow.start_span_no_context(
            "turn", span_type=SpanType.CHAIN, inputs={"message": record.text},
            attributes={"chorus.team": record.team, "chorus.user": record.user, "chorus.thread": record.thread,
                        TURN_ID_KEY: record.turn_id, "chorus.version": self.version},
            metadata={"mlflow.trace.user": record.user, "mlflow.trace.session": record.thread,
                      TURN_ID_KEY: record.turn_id, "chorus.team": record.team, "chorus.version": self.version},
            tags={"chorus.team": record.team},
            experiment_id=self._experiment_id, start_time_ns=record.started_ns,
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
        root.end(
            outputs={"answers": answers, "stop_reason": done.stop_reason if done else "unknown"},
            attributes={"chorus.prompt_tokens": done.prompt_tokens if done else 0,
                        "chorus.completion_tokens": done.completion_tokens if done else 0,
                        "chorus.cost_usd": (done.cost if done and done.cost is not None else "unknown")},
            status=SpanStatusCode.ERROR if failed else SpanStatusCode.OK,
            end_time_ns=record.ended_ns,
        )
        self.exported += 1

    # -- reading back -------------------------------------------------------------------------

    def trace_id_of(self, turn_id: str) -> str | None:
        """The MLflow trace id of a turn (blocking; None when it was not exported)."""
        mlflow = self._mlflow()
        found = mlflow.search_traces(
            locations=[str(self._experiment_id)], filter_string=f"metadata.`{TURN_ID_KEY}` = '{_quote(turn_id)}'",
            max_results=1, return_type="list",
        )
        return str(found[0].info.trace_id) if found else None

    def log_feedback(self, turn_id: str, user: str, value: bool, comment: str | None = None) -> bool:
        """Attach a user's thumbs up/down to the turn's trace (blocking); False when there is no trace."""
        self.flush(15)  # a quick thumbs-up may come before the trace is written
        trace_id = self.trace_id_of(turn_id)
        if trace_id is None:
            return False
        mlflow = self._mlflow()
        from mlflow.entities import AssessmentSource, AssessmentSourceType

        mlflow.log_feedback(trace_id=trace_id, name="user_feedback", value=value, rationale=comment or None,
                            source=AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=user))
        return True


_CONNECT = TurnRecord(turn_id="", user="", thread="", team="", text="", started_ns=0)  # "connect first"
_AGENT_EVENTS = (TokenEvent, ToolCallEvent, ToolResultEvent, RetrievalEvent, MessageEvent)


_batch = threading.local()  # .spans: the spans of the trace being written by this thread, else None


def _batch_span_logging() -> None:
    """Make MLflow send a trace's spans in one request instead of one request per span.

    MLflow's exporter logs each span to the tracking store as it ends: to a server, one HTTP
    request per span (a turn has 5-20), which made a trace take seconds on a loaded server and
    the last turns' traces miss a stopping process's deadline. The tracer ends all of a trace's
    spans in one go, in its own thread, so while it does (``_batch.spans`` is a list) the spans
    are held and sent together when the root span (which ends last) arrives; the trace itself is
    then created, as before, after its spans. Elsewhere MLflow behaves as usual. Only MLflow 3's
    ``MlflowV3SpanExporter._log_spans(experiment_id, spans, workspace)`` is wrapped; if a future
    MLflow lacks it, spans simply go one by one again.
    """
    try:
        from mlflow.tracing.export.mlflow_v3 import MlflowV3SpanExporter
    except ImportError:
        return
    original = getattr(MlflowV3SpanExporter, "_log_spans", None)
    if original is None or getattr(original, "chorus_batched", False):
        return

    def log_spans(self: Any, experiment_id: str, spans: list[Any], workspace: str | None = None) -> None:
        held: list[Any] | None = getattr(_batch, "spans", None)
        if held is None:
            return original(self, experiment_id, spans, workspace=workspace)  # type: ignore[no-any-return]
        held.extend(spans)
        if any(span.parent_id is None for span in spans):
            whole, held[:] = list(held), []
            original(self, experiment_id, whole, workspace=workspace)
        return None

    log_spans.chorus_batched = True  # type: ignore[attr-defined]
    MlflowV3SpanExporter._log_spans = log_spans  # type: ignore[method-assign]


def _close_at_exit(ref: weakref.ref[Tracer]) -> None:
    """``atexit``: the traces of a process's last turns are written before it ends (bounded)."""
    tracer = ref()
    if tracer is not None:
        tracer.close()


def _quote(value: str) -> str:
    return "".join(c for c in value if c.isalnum() or c in "-_")
