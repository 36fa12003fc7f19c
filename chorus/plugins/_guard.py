"""Keeping plugin code from ending the process.

A plugin's import and every hook Chorus calls are guarded: whatever they raise, ``SystemExit``,
``KeyboardInterrupt`` and ``GeneratorExit`` included, becomes a report on that plugin instead of
the end of ``chorus run``. The one interruption that still goes through is the operator really
pressing Ctrl+C while plugins load: :class:`InterruptWatch` tells it apart from a plugin that
raises ``KeyboardInterrupt`` itself. Factories a plugin hands over (agents, embedders), which
run later, are wrapped by :func:`contained` so what they raise is an ordinary error.
"""

from __future__ import annotations

import functools
import importlib
import signal
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class PluginExit(RuntimeError):
    """Plugin code raised an exception that would end the process (``SystemExit``, …).

    Re-raised as an ordinary error so that the caller's ``except Exception`` reports the plugin.
    """


class InterruptWatch:
    """While plugins load: did the user really press Ctrl+C (a SIGINT arrived)?

    Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be, so a
    real Ctrl+C during a plugin's import looks like the plugin raising it. The watch chains a
    handler in front of the current one that only notes the signal; a ``KeyboardInterrupt``
    with no signal noted is the plugin's own doing. Outside the main thread (where no signal is
    ever delivered) or when SIGINT is ignored or left to the system, every interrupt is the
    plugin's.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._previous: Callable[[int, FrameType | None], Any] | None = None

    def __enter__(self) -> InterruptWatch:
        if threading.current_thread() is not threading.main_thread():
            return self
        previous = signal.getsignal(signal.SIGINT)
        if not callable(previous):  # SIG_IGN, SIG_DFL or a handler set outside Python: no KeyboardInterrupt
            return self
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main interpreter
            return self
        self._previous = previous
        return self

    def _on_sigint(self, signum: int, frame: FrameType | None) -> Any:
        self.interrupted = True
        assert self._previous is not None
        return self._previous(signum, frame)  # the usual behaviour: KeyboardInterrupt, or the server's stop

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def stopped_by_user(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the user's Ctrl+C, which must propagate, rather than a plugin's fault."""
        return isinstance(exc, KeyboardInterrupt) and self.interrupted


def describe(exc: BaseException) -> str:
    """``Type: message`` for a report, saying so when plugin code tried to end the process."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not isinstance(exc, Exception):
        text += " (plugin code tried to end the process; the plugin was skipped instead)"
    return text


_NOT_THE_PLUGIN = (str(Path(__file__).parent), str(Path(importlib.__file__).parent))


def where(tb: TracebackType | None) -> str | None:
    """``file:line`` of the innermost frame of plugin code (not the loader's, not importlib's), for the
    operator; None when the error is not raised in plugin code (a module that does not exist)."""
    frames = [f for f in traceback.extract_tb(tb)
              if not f.filename.startswith("<") and not f.filename.startswith(_NOT_THE_PLUGIN)]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def contained(func: Callable[P, R], what: str) -> Callable[P, R]:
    """``func`` (a plugin's factory), with anything it raises that would end the process
    (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``…) turned into :class:`PluginExit`.

    Factories run when a conversation opens or memory is first used, inside the server's event
    loop, where such an exception would stop the server; there the server's own signal handler
    deals with a real Ctrl+C, so a ``KeyboardInterrupt`` here is the plugin's.
    """

    @functools.wraps(func, updated=())  # a class's own __dict__ is not a function's
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except Exception:
            raise
        except BaseException as exc:
            raise PluginExit(f"{what} raised {describe(exc)}") from exc

    return call
