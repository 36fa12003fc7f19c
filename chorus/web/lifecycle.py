"""Starting and stopping the server: the running turns are stopped at the signal itself.

Stopping (SIGTERM, Ctrl+C): from the signal, the process has SHUTDOWN_BUDGET_S to end, within the
10 s a rolling restart allows. At the signal the running turns are stopped (as by the stop button,
so each records its cost, keeps what was said and saves the team's state), while uvicorn stops
accepting and closes the connections; then Chainlit's last writes and the traces are waited for.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from typing import Any

import chainlit as cl

from chorus.web.api import state
from chorus.web.context import current

log = logging.getLogger("chorus.app")

SHUTDOWN_BUDGET_S = 8.0
TURN_DRAIN_S = 4.0  # of which the stopped turns may take this long to finish their bookkeeping
# Chainlit stores messages and steps in tasks of their own: the data layer methods that write.
_WRITES = frozenset({"create_step", "update_step", "delete_step", "create_element", "update_thread"})


def register() -> None:
    """Chainlit's start-up and shutdown handlers."""
    cl.on_app_startup(on_app_startup)
    cl.on_app_shutdown(on_app_shutdown)


async def on_app_startup() -> None:
    """Start background runs (DBOS); stop the running turns at the signal itself, not once uvicorn
    has closed every connection."""
    await state.start_runs(current())
    _background.add(asyncio.ensure_future(_count_chats()))
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous) or getattr(previous, "chorus_drains", False):
            continue

        def on_signal(sig: int, frame: Any, previous: Any = previous) -> None:
            previous(sig, frame)  # uvicorn's: stop accepting, close the connections, then shut down
            loop.call_soon_threadsafe(begin_draining)

        on_signal.chorus_drains = True  # type: ignore[attr-defined]
        signal.signal(signum, on_signal)


async def _count_chats() -> None:
    """Keep the metrics' count of open chats (this process's share) up to date."""
    from chainlit.session import ws_sessions_id

    from chorus import metrics

    while True:
        metrics.ACTIVE_CHATS.set(len(ws_sessions_id))
        await asyncio.sleep(CHATS_COUNTED_EVERY_S)


CHATS_COUNTED_EVERY_S = 2.0
_background: set[asyncio.Future[None]] = set()


def begin_draining() -> None:
    web = current()
    if web.draining is None:
        web.drain_deadline = time.monotonic() + SHUTDOWN_BUDGET_S
        web.draining = asyncio.ensure_future(_drain_turns())
        # Background runs stop too: DBOS first, so they stay pending and go on after the restart.
        web.stopping_runs = asyncio.ensure_future(state.stop_runs())


async def _drain_turns() -> None:
    """Stop every running turn and wait (bounded) until each has recorded what it did."""
    web = current()
    running = dict(web.running)
    if not running:
        return
    log.warning("stopping: %d turn(s) still answering are cut short; what they said and cost is kept", len(running))
    until = time.monotonic() + TURN_DRAIN_S
    pending = set(running)
    while pending and time.monotonic() < until:
        for task in pending:
            # Again each time: a turn that was still starting is stopped once it runs. A pipeline
            # keeps its finished steps, to go on from the next one after the restart.
            running[task].stop(keep_progress=True)
        _, pending = await asyncio.wait(pending, timeout=0.1)
    if pending:  # stuck past their stop (a tool in a thread, say): cancel them, as a second stop would
        log.warning("stopping: %d turn(s) did not stop within %.0f s and are cancelled", len(pending), TURN_DRAIN_S)
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=max(0.1, min(1.0, web.drain_deadline - time.monotonic() - 2)))


def _pending_writes() -> list[asyncio.Task[Any]]:
    running = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not running and not t.done()
            and getattr(t.get_coro(), "__qualname__", "").rpartition(".")[2] in _WRITES]


async def on_app_shutdown() -> None:
    """`chorus run` stops: running turns end and record, their messages and traces are written, all
    within SHUTDOWN_BUDGET_S of the signal (Chainlit then closes the data layer and exits)."""
    web = current()
    begin_draining()  # already begun at a signal; not when the server stops otherwise
    assert web.draining is not None
    await asyncio.wait([web.draining, *([web.stopping_runs] if web.stopping_runs else [])],
                       timeout=max(0.0, web.drain_deadline - time.monotonic() - 1.5))
    writes = _pending_writes()
    if writes:
        await asyncio.wait(writes, timeout=max(0.1, web.drain_deadline - time.monotonic() - 1.0))
    from chorus import metrics

    metrics.process_ends()
    await web.chorus.mcp.close()  # stdio MCP servers' processes end with their connections
    tracer = web.chorus.tracer
    if tracer is not None:
        # The rest of the budget, unless the operator chose how long traces may hold a stop up.
        configured = web.chorus.settings.trace_flush_timeout
        wait = configured if configured is not None else max(0.5, web.drain_deadline - time.monotonic())
        await asyncio.to_thread(tracer.close, wait)


CONNECTIONS_CLOSE_S = 2  # seconds (uvicorn takes a whole number)


def bound_connection_wait() -> None:
    """At SIGTERM, wait at most CONNECTIONS_CLOSE_S for open HTTP requests before shutting down.

    uvicorn waits for every open request to finish before the app's shutdown (which stops the turns
    and writes the traces) may run, with no limit by default. A page on socket.io's long-polling
    (a proxy that passes no websockets) always has a request open until the server's next ping, so
    an idle one held a stop up for over 20 s. Chainlit makes uvicorn's Config itself; this sets the
    limit on every Config made in this process (``chorus run`` and ``chainlit run app.py``).
    """
    import uvicorn

    if getattr(uvicorn.Config, "chorus_bounded", False):
        return

    class Config(uvicorn.Config):
        chorus_bounded = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("timeout_graceful_shutdown", CONNECTIONS_CLOSE_S)
            super().__init__(*args, **kwargs)  # configures uvicorn's loggers: the filter goes after
            logging.getLogger("uvicorn.error").addFilter(_expected_at_stop)

    uvicorn.Config = Config  # type: ignore[misc]


def _expected_at_stop(record: logging.LogRecord) -> bool:
    """uvicorn's ERROR for the requests cut at CONNECTIONS_CLOSE_S is what a stop means: say so as such."""
    if str(record.msg).startswith("Cancel %s running task(s), timeout graceful shutdown"):
        record.msg = f"stopping: %s request(s) still open after {CONNECTIONS_CLOSE_S} s were cut (long-polling pages)"
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True
