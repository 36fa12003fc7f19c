"""Secrets this process holds that must never be written out: users' own provider keys.

:func:`hide` registers one; from then on every log record of the process (its message and its
traceback) has it masked, whatever logger wrote it, and :func:`scrub` masks it in any text the
caller is about to show or store (an error shown to the user, a trace's detail).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

_hidden: set[str] = set()
_lock = threading.Lock()
_installed = False


def mask(secret: str) -> str:
    return f"••••{secret[-4:]}"


def scrub(text: str) -> str:
    """``text`` with every hidden secret masked."""
    for secret in _hidden:
        if secret in text:
            text = text.replace(secret, mask(secret))
    return text


def hide(secret: str) -> None:
    """Never let ``secret`` reach a log line, from now on (secrets shorter than 8 are ignored)."""
    global _installed
    if len(secret) < 8:
        return
    with _lock:
        _hidden.add(secret)
        if not _installed:
            _install()
            _installed = True


def _install() -> None:
    make = logging.getLogRecordFactory()

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made = make(*args, **kwargs)
        try:
            message = made.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return made
        if any(s in message for s in _hidden):
            made.msg, made.args = scrub(message), ()
        if made.exc_info and made.exc_info[1] is not None:
            text = logging.Formatter().formatException(made.exc_info)
            if any(s in text for s in _hidden):
                made.exc_text = scrub(text)
        return made

    logging.setLogRecordFactory(record)
