"""A conversation's turns: the one path every turn takes, whoever asks (page, widget, CLI, tests).

- :mod:`~chorus.turn.container`: :class:`Chorus`, what a process loads once (settings, plugins,
  teams, memory, tracing), and :meth:`Chorus.open_session`;
- :mod:`~chorus.turn.session`: :class:`ChatSession`, one conversation with one team: the built team,
  its saved states, resume and rewind;
- :mod:`~chorus.turn.runner`: :func:`run_turn`, which yields the typed events of
  :mod:`chorus.events`, ending with exactly one :class:`~chorus.events.DoneEvent`;
- :mod:`~chorus.turn.state`: :class:`Turn`, what one turn carries (budget, model calls, notices,
  cancellation);
- :mod:`~chorus.turn.observers`: who watches each turn (tracing, the cost ledger, yours);
- :mod:`~chorus.turn.translate`: AutoGen's stream items as Chorus's events.

Nothing here imports Chainlit.
"""

from __future__ import annotations

from chorus.text import clean_text
from chorus.turn.container import Chorus
from chorus.turn.errors import MEMORY_NOTICE, PROBLEMS_NOTICE, ChorusError
from chorus.turn.observers import TurnObserver
from chorus.turn.runner import ask, run_turn
from chorus.turn.session import ChatSession
from chorus.turn.state import Turn
from chorus.turn.translate import USER

__all__ = [
    "MEMORY_NOTICE",
    "PROBLEMS_NOTICE",
    "USER",
    "ChatSession",
    "Chorus",
    "ChorusError",
    "Turn",
    "TurnObserver",
    "ask",
    "clean_text",
    "run_turn",
]
