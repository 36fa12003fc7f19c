"""Background runs as DBOS durable workflows (README, "Background runs"; DBOS: https://docs.dbos.dev).

Each run is one workflow, ``chorus_run``, whose id is the run's id, taken from the DBOS queue
``chorus-runs`` by a process that executes runs (``chorus run`` unless ``CHORUS_RUN_CONCURRENCY``
is 0, and every ``chorus worker``). The queue's limits are DBOS's: ``CHORUS_RUN_CONCURRENCY`` runs
at once per process, ``CHORUS_RUN_GLOBAL_CONCURRENCY`` across all of them. DBOS keeps the
workflow's state in the system database: Chorus's own PostgreSQL database (schema ``dbos``), or,
for the embedded SQLite default, a SQLite file beside Chorus's (``chorus.runs.db``), so its queue
polling never holds the lock the chats write under.

The workflow executes the run's turn (``RunService.execute``) on the process's own event loop,
then calls the run's webhook as a DBOS step (retried; never again once it answered). A process
that stops (SIGTERM, or killed) leaves its workflows ``PENDING``. Every executing process writes a
heartbeat to ``chorus_run_workers``; one that finds a process dead (gone from this machine, or
silent for ``CHORUS_WORKER_DEAD_AFTER`` seconds) claims it and gives its pending workflows back to
the queue (``DBOS.resume_workflow``), where any process takes them up and the run goes on from its
journal (chorus.service.runs).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from chorus.processes import pid_alive
from chorus.service.runs import Outcome, RunService, webhook_allowed
from chorus.store import runs as store

log = logging.getLogger("chorus.runs")
T = TypeVar("T")

RUNS_QUEUE = "chorus-runs"
APP_VERSION = "chorus-runs-1"
"""One DBOS application version for every Chorus process, so that any of them may recover any
other's workflows (DBOS recovers only workflows of its own version)."""
WEBHOOK_TIMEOUT_S = 10.0


def system_database_url(database_url: str) -> str:
    """Where DBOS keeps its state: Chorus's PostgreSQL database, or a SQLite file beside Chorus's."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:":
            raise ValueError("background runs need a database file, not an in-memory SQLite database")
        path = Path(database)
        return "sqlite:///" + str(path.with_name(path.stem + ".runs" + (path.suffix or ".db")).resolve())
    return url.set(drivername="postgresql").render_as_string(hide_password=False)



_HOST: RunHost | None = None
_WORKFLOWS: dict[str, Any] = {}


class RunHost:
    """DBOS in one process: launched at start, destroyed at stop; executes runs when ``execute``."""

    def __init__(self, service: RunService, database_url: str, *, concurrency: int, global_concurrency: int = 0,
                 dead_after: float = 15.0, webhook_hosts: list[str] | None = None) -> None:
        self.service = service
        self.database_url = database_url
        self.concurrency = concurrency
        self.global_concurrency = global_concurrency
        self.dead_after = dead_after
        self.webhook_hosts = webhook_hosts or []
        self.hostname = socket.gethostname()
        self.place = _place(self.hostname)
        """Where this process runs: the machine and its PID namespace (a pid means this process only there)."""
        self.worker = f"{self.hostname}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        service.worker = self.worker
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started_at = store.now()
        self.executing: set[concurrent.futures.Future[Any]] = set()
        self._tending: asyncio.Task[None] | None = None
        self._beating: threading.Thread | None = None
        self._stop_beating = threading.Event()
        self.destroyed = threading.Event()
        """Set once DBOS is shut down in this process (nothing it does after is recorded)."""
        self._queue: Any = None
        self.stopping = False
        self.ready = False
        self.failed: str | None = None
        self._starting: asyncio.Future[None] | None = None

    @property
    def executes(self) -> bool:
        return self.concurrency > 0

    def begin(self) -> None:
        """Start in the background (importing and launching DBOS takes seconds the page need not
        wait for); :meth:`until_ready` waits for it."""
        self._starting = asyncio.ensure_future(self._start_logged())

    async def _start_logged(self) -> None:
        """Start; after a failure (the database unreachable for a moment), try again, less and less
        often, until it works or the process stops."""
        pause = 2.0
        while not self.stopping:
            try:
                await self.start()
                self.failed = None
                return
            except Exception as exc:
                self.failed = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.error("background runs are off for now: DBOS could not start (%s); trying again in %.0f s",
                          self.failed, pause)
                await asyncio.to_thread(_forget_dbos)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 60.0)

    async def until_ready(self, timeout: float = 30.0) -> bool:
        if not self.ready and self._starting is not None:
            await asyncio.wait([self._starting], timeout=timeout)
        return self.ready and not self.stopping

    async def start(self) -> None:
        global _HOST
        self.loop = asyncio.get_running_loop()
        _HOST = self
        if self.executes:  # alive (heartbeats) before DBOS may hand this process a run, and while it launches
            await store.heartbeat(self.service.engine, self.worker, self.place, os.getpid(), self.started_at)
            if self._beating is None:
                self._beating = threading.Thread(target=self._beat, name="chorus-runs-heartbeat", daemon=True)
                self._beating.start()
            if self._tending is None:
                self._tending = asyncio.create_task(self._tend(), name="chorus-runs-takeover")
        await asyncio.to_thread(self._launch)
        self.ready = True

    def _launch(self) -> None:
        from dbos import DBOS, DBOSConfig

        _register_workflows()
        config: DBOSConfig = {
            "name": "chorus", "system_database_url": system_database_url(self.database_url),
            "application_version": APP_VERSION, "executor_id": self.worker, "log_level": "WARNING",
            "notification_listener_polling_interval_sec": 0.2,
        }
        DBOS(config=config)
        if not self.executes:
            DBOS.listen_queues([])
        DBOS.launch()
        self._queue = DBOS.register_queue(
            RUNS_QUEUE, worker_concurrency=self.concurrency or None,
            global_concurrency=self.global_concurrency or None, polling_interval_sec=0.25,
            on_conflict="always_update" if self.executes else "never_update")

    async def enqueue(self, run_id: str) -> None:
        """Hand the run to the queue (its workflow's id is the run's id: enqueued once)."""
        from dbos import SetWorkflowID

        def put() -> None:
            with SetWorkflowID(run_id):
                self._queue.enqueue(_WORKFLOWS["run"], run_id)

        await asyncio.to_thread(put)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the process's loop from a DBOS thread, and wait for it."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self.executing.add(future)
        try:
            return future.result()
        finally:
            self.executing.discard(future)

    async def stop(self) -> None:
        """Stop: DBOS first (so the runs cut short stay PENDING and are recovered), then the runs."""
        if self.stopping:
            return
        self.stopping = True
        if self._starting is not None and not self._starting.done():
            await asyncio.wait([self._starting], timeout=10)
        if self._tending is not None:
            self._tending.cancel()
        self._stop_beating.set()
        if self.ready:
            from dbos import DBOS

            await asyncio.to_thread(DBOS.destroy, workflow_completion_timeout_sec=0)
        self.destroyed.set()
        running = list(self.executing)
        if running:
            log.warning("stopping: %d background run(s) are cut short; they go on from their last finished "
                        "step when a process takes them up", len(running))
        for future in running:
            future.cancel()
        if self.executes:
            # Without its heartbeat row, this process's unfinished runs are taken over at once by
            # another process (or by the next one started here).
            try:
                await store.remove_worker(self.service.engine, self.worker)
            except Exception as exc:
                log.warning("background runs: could not sign off (%s); others take over in %.0f s", exc,
                            self.dead_after)

    # -- taking over the runs of processes that died ---------------------------------------

    @property
    def _every(self) -> float:
        return max(0.25, min(2.0, self.dead_after / 6))

    def _beat(self) -> None:
        """The heartbeat, in a thread: it says the process is alive even while its loop is busy."""
        engine = sa.create_engine(store.sync_url(self.database_url), pool_size=1, max_overflow=0)
        try:
            while not self._stop_beating.wait(self._every):
                try:
                    store.heartbeat_sync(engine, self.worker, self.place, os.getpid(), self.started_at)
                except Exception as exc:
                    log.warning("background runs: heartbeat failed (%s); trying again", exc)
        finally:
            engine.dispose()

    async def _tend(self) -> None:
        """Look for stopped processes whose runs need taking over, and for runs never queued."""
        rounds = 0
        while True:
            await asyncio.sleep(self._every)
            if not self.ready:
                continue
            try:
                await self.take_over()
                if rounds % max(1, int(60 / self._every)) == 0:
                    await self.requeue_lost()
                rounds += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("background runs: could not look for stopped workers (%s); trying again", exc)

    async def take_over(self) -> list[str]:
        """Give the pending runs of stopped processes back to the queue; the runs resumed.

        A run's workflow is PENDING while a process executes it, and stays so when that process
        stops. Its process counts as stopped when it has no heartbeat row (it stopped cleanly, or
        its row was claimed and released), when its row is older than ``dead_after``, or when it
        ran on this machine, in this PID namespace, and its process is gone. One process claims a
        stopped process (a row of its own, so exactly one succeeds), lists that process's pending
        runs again, hands them back, and removes the claim.
        """
        from dbos import DBOS

        pending = await asyncio.to_thread(_pending_by_executor)
        if not pending or set(pending) == {self.worker}:
            return []
        cutoff = await store.db_now(self.service.engine) - timedelta(seconds=self.dead_after)
        rows = await store.workers(self.service.engine)
        resumed: list[str] = []
        for executor in pending:
            if executor == self.worker:
                continue
            row = rows.get(executor)
            if row is not None:
                gone = row["host"] == self.place and not pid_alive(int(row["pid"]))
                seen = row["seen_at"] if row["seen_at"].tzinfo else row["seen_at"].replace(tzinfo=cutoff.tzinfo)
                if not gone and seen >= cutoff:
                    continue  # alive (or being taken over by another process)
                why = "its process is gone" if gone else f"silent for over {self.dead_after:.0f} s"
            else:
                why = "it stopped"
            if not await store.claim(self.service.engine, executor, self.worker, row):
                continue  # another process claimed it first
            ids = (await asyncio.to_thread(_pending_by_executor, executor)).get(executor, [])
            for workflow_id in ids:
                await asyncio.to_thread(DBOS.resume_workflow, workflow_id, queue_name=RUNS_QUEUE)
            await store.remove_worker(self.service.engine, executor, claimed_by=self.worker)
            resumed += ids
            if ids:
                log.warning("background runs: %s stopped (%s); %d run(s) it was executing go on: %s",
                            executor, why, len(ids), ", ".join(ids))
        return resumed

    async def requeue_lost(self) -> list[str]:
        """Queue again the runs still ``queued`` a minute after they were made (the process that made
        them may have stopped before handing them to the queue); the workflow id is the run's id, so
        a run already in the queue is not queued twice."""
        lost = await store.queued_before(self.service.engine, store.now() - timedelta(minutes=1))
        for run_id in lost:
            try:
                await self.enqueue(run_id)
            except Exception as exc:
                log.debug("run %s: not queued again (%s)", run_id, exc)
        return lost

    # -- webhooks -------------------------------------------------------------------------

    async def deliver(self, run_id: str) -> str:
        """POST the finished run to its webhook; raises (and DBOS retries) unless it answers 2xx."""
        run = await store.get_run(self.service.engine, run_id)
        if run is None or run.webhook is None:
            return "none"
        why = webhook_allowed(run.webhook, self.webhook_hosts)
        if why is not None:  # the allow-list changed since the run was made: still never called
            await store.set_webhook_status(self.service.engine, run_id, f"refused: {why}")
            return "refused"
        body = {"id": run.id, "object": "chorus.run", "status": run.status, "team": run.team,
                "thread_id": run.thread_id, "result": run.result, "error": run.error}
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False) as client:
            response = await client.post(run.webhook, json=body, headers={"User-Agent": "chorus-runs"})
        status = f"{response.status_code}"
        await store.set_webhook_status(self.service.engine, run_id, f"answered {status}")
        if not response.is_success:
            raise RuntimeError(f"the webhook answered {status}")
        return "delivered"


def _forget_dbos() -> None:
    """Undo a launch that failed half way, so that the next one starts afresh."""
    from dbos import DBOS

    try:
        DBOS.destroy(workflow_completion_timeout_sec=0)
    except Exception as exc:
        log.debug("DBOS could not be reset: %s", exc)


def _pending_by_executor(executor: str | None = None) -> dict[str, list[str]]:
    """The ``chorus_run`` workflows that are PENDING (being executed, or left by a process that
    stopped), by the process that took them."""
    from dbos import DBOS

    found: dict[str, list[str]] = {}
    for status in DBOS.list_workflows(status="PENDING", name="chorus_run", executor_id=executor, load_input=False,
                                      load_output=False):
        found.setdefault(status.executor_id or "", []).append(status.workflow_id)
    return found


def _place(hostname: str) -> str:
    try:
        return f"{hostname}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return hostname


def _register_workflows() -> None:
    """The DBOS workflow and step (registered once per process, before DBOS is launched)."""
    if _WORKFLOWS:
        return
    from dbos import DBOS

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=1.0, backoff_rate=2.0)
    def notify(run_id: str) -> str:
        return _host().call(_host().deliver(run_id))

    @DBOS.workflow(name="chorus_run")
    def run(run_id: str) -> str:
        host = _host()
        outcome: Outcome = host.call(host.service.execute(run_id))
        try:
            notify(run_id)
        except Exception as exc:
            host.call(store.set_webhook_status(host.service.engine, run_id, f"failed: {exc}"))
        return outcome.status

    _WORKFLOWS["run"] = run


def _host() -> RunHost:
    host = _HOST
    if host is None:
        raise RuntimeError("background runs are not started in this process")
    if host.stopping:
        # Raise only once DBOS is shut down: then the workflow stays PENDING (it is not recorded
        # as failed) and is taken over.
        host.destroyed.wait(30)
        raise RuntimeError("this process is stopping: the run goes on where it is taken over")
    return host
