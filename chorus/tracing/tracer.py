"""The tracer: turn records go to MLflow from one background thread, never slowing a turn."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from typing import Any

from chorus.settings import Settings
from chorus.tracing.pseudonyms import Pseudonyms
from chorus.tracing.spans import TURN_ID_KEY, TurnRecord, write_trace
from chorus.tracing.store import _batch, _batch_span_logging, http_request_settings, tracking_uri
from chorus.tracing.ui import recorded_ui

log = logging.getLogger("chorus.tracing")  # one logger for the package, as operators filter it

EXPERIMENT = "chorus"
PAUSE_AFTER_FAILURE_S = 60.0
# At shutdown, how long the last turns' traces may hold a process up (``trace_flush_timeout``
# overrides it): enough for a few turns to a loaded server, short of systemd's 90 s stop timeout.
EXIT_FLUSH_TIMEOUT_S = 15.0
_QUEUE_LIMIT = 1000  # turns waiting for export; beyond it traces are dropped, never the chat slowed
# MLflow's tracking URI is process-wide. Each MLflow call of a tracer sets its own URI and runs under
# this lock, so that two tracers in one process (tests, a CLI command beside the app) never write one
# store's trace with another store's experiment id ("No Experiment with id=1 exists").
_MLFLOW_LOCK = threading.RLock()


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
        self.pseudonym = Pseudonyms(settings)
        """How user ids appear in traces (CHORUS_PSEUDONYMOUS_IDS)."""
        self.problem: str | None = None
        """Why the last export to MLflow failed (None once one succeeds): what /readyz reports."""

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
        return TurnRecord(turn_id=turn_id, user=self.pseudonym(user), thread=thread, team=team, text=text,
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
                    with _MLFLOW_LOCK:
                        self._mlflow()
                elif time.monotonic() >= self._paused_until:
                    with _MLFLOW_LOCK:
                        self._export(record)
                    self.problem = None
            except Exception as exc:
                self.problem = f"{type(exc).__name__}: {exc}"
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
        write_trace(self._mlflow(), record, experiment_id=self._experiment_id, version=self.version)
        self.exported += 1

    def trace_id_of(self, turn_id: str) -> str | None:
        """The MLflow trace id of a turn (blocking; None when it was not exported)."""
        with _MLFLOW_LOCK:
            mlflow = self._mlflow()
            found = mlflow.search_traces(
                locations=[str(self._experiment_id)],
                filter_string=f"metadata.`{TURN_ID_KEY}` = '{_quote(turn_id)}'", max_results=1, return_type="list",
            )
        return str(found[0].info.trace_id) if found else None

    def log_feedback(self, turn_id: str, user: str, value: bool, comment: str | None = None) -> bool:
        """Attach a user's thumbs up/down to the turn's trace (blocking); False when there is no trace."""
        self.flush(15)  # a quick thumbs-up may come before the trace is written (outside the lock)
        with _MLFLOW_LOCK:
            trace_id = self.trace_id_of(turn_id)
            if trace_id is None:
                return False
            mlflow = self._mlflow()
            from mlflow.entities import AssessmentSource, AssessmentSourceType

            mlflow.log_feedback(trace_id=trace_id, name="user_feedback", value=value, rationale=comment or None,
                                source=AssessmentSource(source_type=AssessmentSourceType.HUMAN,
                                                        source_id=self.pseudonym(user)))
        return True


_CONNECT = TurnRecord(turn_id="", user="", thread="", team="", text="", started_ns=0)  # "connect first"


def _close_at_exit(ref: weakref.ref[Tracer]) -> None:
    """``atexit``: the traces of a process's last turns are written before it ends (bounded)."""
    tracer = ref()
    if tracer is not None:
        tracer.close()


def _quote(value: str) -> str:
    return "".join(c for c in value if c.isalnum() or c in "-_")
