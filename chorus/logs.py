"""Logging set-up shared by the page and the CLI."""

from __future__ import annotations

import asyncio
import logging

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
