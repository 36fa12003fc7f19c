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

The modules: :mod:`~chorus.tracing.spans` (what a turn did and the span tree it becomes),
:mod:`~chorus.tracing.tracer` (the export thread, reading traces back, feedback),
:mod:`~chorus.tracing.store` (where traces go and how MLflow talks to a server) and
:mod:`~chorus.tracing.ui` (where the MLflow UI is, for trace links).
"""

from chorus.tracing.spans import TURN_ID_KEY, TurnRecord
from chorus.tracing.store import HTTP_REQUEST_DEFAULTS, http_request_settings, tracking_uri
from chorus.tracing.tracer import (
    EXIT_FLUSH_TIMEOUT_S,
    EXPERIMENT,
    PAUSE_AFTER_FAILURE_S,
    Tracer,
)
from chorus.tracing.ui import UI_RECORD, ServedUI, forget_ui, record_ui, recorded_ui

__all__ = [
    "EXIT_FLUSH_TIMEOUT_S",
    "EXPERIMENT",
    "HTTP_REQUEST_DEFAULTS",
    "PAUSE_AFTER_FAILURE_S",
    "TURN_ID_KEY",
    "UI_RECORD",
    "ServedUI",
    "Tracer",
    "TurnRecord",
    "forget_ui",
    "http_request_settings",
    "record_ui",
    "recorded_ui",
    "tracking_uri",
]
