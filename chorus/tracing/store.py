"""Where traces go, and how MLflow is made to talk to a tracking server the way Chorus needs."""

from __future__ import annotations

import logging
import math
import os
import threading
from typing import Any

from chorus.settings import Settings

log = logging.getLogger("chorus.tracing")  # one logger for the package, as operators filter it

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


def tracking_uri(settings: Settings) -> str:
    """``CHORUS_MLFLOW_TRACKING_URI``, or a SQLite store in the data directory."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return f"sqlite:///{(settings.home.expanduser() / 'mlflow.db').resolve()}"



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
