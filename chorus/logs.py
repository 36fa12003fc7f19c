"""Logging (and AutoGen's telemetry) set-up shared by the page and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

# AutoGen logs every runtime event as JSON at INFO (slow and noisy), and logs a stopped
# model call as an ERROR with a traceback although nothing went wrong.
_AUTOGEN_LOGGERS = ("autogen_core", "autogen_core.events", "autogen_agentchat", "autogen_agentchat.events")


class _DropCancellations(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


def quiet_autogen() -> None:
    """Keep AutoGen's loggers at WARNING and drop its reports of cancelled (stopped) calls."""
    for name in _AUTOGEN_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        if not any(isinstance(f, _DropCancellations) for f in logger.filters):
            logger.addFilter(_DropCancellations())
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _skip_disabled_runtime_spans()


def _skip_disabled_runtime_spans() -> None:
    """With ``AUTOGEN_DISABLE_RUNTIME_TRACING=true`` (Chorus's default, ``chorus._env``) AutoGen's
    runtime still opens a no-op OpenTelemetry span for every message it routes, each streamed chunk
    included: about a tenth of a loaded process's CPU, spent recording nothing. Hand it one shared
    empty span instead. With the variable unset, AutoGen's spans are untouched."""
    from autogen_core._telemetry import _tracing
    from opentelemetry.trace import INVALID_SPAN, NoOpTracerProvider

    helper: Any = _tracing.TraceHelper
    if getattr(helper.trace_block, "__chorus_fix__", False):
        return
    original = helper.trace_block
    no_span = contextlib.nullcontext(INVALID_SPAN)  # reusable: it holds no state

    def trace_block(self: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self.tracer_provider, NoOpTracerProvider):
            return no_span
        return original(self, *args, **kwargs)

    trace_block.__chorus_fix__ = True  # type: ignore[attr-defined]
    helper.trace_block = trace_block
