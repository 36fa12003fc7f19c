"""Prometheus metrics (README, "Metrics"), with ``prometheus-client``.

The metrics are module-level objects that any layer updates (a turn's observer, the model router,
the page's handlers, the API). ``chorus run`` and ``chorus worker`` keep them in
``prometheus-client``'s multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the CLI before
the first import of ``prometheus_client``; see ``chorus.cli._common._metrics_directory``): each
process writes its values to files in ``CHORUS_HOME/metrics``, and
``GET /metrics`` on any process of the machine adds them all up. Counters of processes that
stopped keep counting in the totals; gauges of live chats count live processes only.

Some figures are read when scraped rather than counted (:class:`Snapshot`): the background runs
queued and running (from the database), open circuits and plugin problems (of the process that
answers the scrape).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chorus.processes import pid_alive

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, float("inf"))

TURNS = Counter("chorus_turns", "Turns by team and how they ended (completed, stopped, error, budget, ...).",
                ["team", "outcome"])
TURN_SECONDS = Histogram("chorus_turn_seconds", "How long turns took, from the message to the team's last word.",
                         ["team"], buckets=LATENCY_BUCKETS)
FIRST_TOKEN_SECONDS = Histogram("chorus_first_token_seconds", "From the message to the first streamed text.",
                                ["team"], buckets=LATENCY_BUCKETS)
TOKENS = Counter("chorus_tokens", "Model tokens by team, agent, model and kind (prompt or completion).",
                 ["team", "agent", "model", "kind"])
COST = Counter("chorus_cost_usd", "What model calls cost (USD, as priced by litellm), by team, agent and model.",
               ["team", "agent", "model"])
MODEL_CALLS = Counter("chorus_model_calls", "Model calls by team, agent and model.", ["team", "agent", "model"])
MODEL_ERRORS = Counter("chorus_model_errors", "Failed attempts to call a model (each retry counts).", ["model"])
MODEL_RETRIES = Counter("chorus_model_retries", "Attempts made again after a model failed.", ["model"])
MODEL_FALLBACKS = Counter("chorus_model_fallbacks", "Calls answered by a fallback instead of the model asked for.",
                          ["model", "to"])
CIRCUITS_OPENED = Counter("chorus_model_circuits_opened", "Times a model was set aside after failing.", ["model"])
OFFLINE_ANSWERS = Counter("chorus_model_offline_answers", "Calls the offline model answered because every model "
                                                          "failed.", ["model"])
ACTIVE_CHATS = Gauge("chorus_active_chats", "Chats open on the page (and the widget) now.",
                     multiprocess_mode="livesum")
GUARD_ACTIONS = Counter("chorus_guard_actions", "What guards did, by guard, stage (message, tool_result, reply) and "
                        "action (block, rewrite, flag, error).", ["guard", "stage", "action"])
API_REQUESTS = Counter("chorus_api_requests", "Requests to the API by endpoint and HTTP status.",
                       ["endpoint", "status"])


def forget_dead_processes() -> None:
    """Drop the live-gauge files of processes that no longer run (their chats are not open)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return
    from prometheus_client import multiprocess

    for path in Path(folder).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(int(pid), folder)  # type: ignore[no-untyped-call]


def process_ends() -> None:
    """This process stops: its live gauges (open chats) leave the sum now, not when another starts."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(os.getpid(), folder)  # type: ignore[no-untyped-call]



class Snapshot(Collector):
    """Figures read at scrape time: ``values`` maps a metric name to (help, {labels: value})."""

    def __init__(self, values: dict[str, tuple[str, list[str], dict[tuple[str, ...], float]]]) -> None:
        self.values = values

    def collect(self) -> Iterator[Any]:
        for name, (doc, labels, samples) in self.values.items():
            family = GaugeMetricFamily(name, doc, labels=labels)
            for key, value in samples.items():
                family.add_metric(list(key), value)
            yield family


def render(snapshots: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The metrics page: every process's values (multiprocess mode) or this one's, plus ``snapshots``."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        counted = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        counted = generate_latest(REGISTRY)
    read = CollectorRegistry()
    for snapshot in snapshots:
        read.register(snapshot)
    return counted + generate_latest(read), CONTENT_TYPE_LATEST
