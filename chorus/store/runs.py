"""Background runs in SQL (README, "Background runs"): the runs, their numbered events, the journal
of their finished calls, and the heartbeats of the processes that execute them.

A run is a user's message to a team, answered in the background: ``queued`` when it is made,
``running`` while a process executes it (``attempts`` counts how many times one began), then
``completed``, ``failed`` or ``cancelled``. Its events are numbered from 1 in the order the turn
made them; a client reading them with ``Last-Event-ID`` gets each exactly once. Durable execution
itself is DBOS's (chorus.service.runs); this module only stores what Chorus shows and replays.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chorus.store.schema import run_calls, run_events, run_workers, runs

STATUSES = ("queued", "running", "completed", "failed", "cancelled")
FINISHED = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Run:
    id: str
    user: str
    team: str
    input: str
    thread_id: str
    message_id: str
    turn_id: str
    status: str
    webhook: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    worker: str | None
    cancel_requested: bool
    result: dict[str, Any] | None
    error: str | None
    webhook_status: str | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _run(row: sa.Row[Any]) -> Run:
    m = row._mapping
    created = _aware(m["created_at"])
    assert created is not None
    return Run(id=m["id"], user=m["user_identifier"], team=m["team"], input=m["input"], thread_id=m["thread_id"],
               message_id=m["message_id"], turn_id=m["turn_id"], status=m["status"], webhook=m["webhook"],
               created_at=created, started_at=_aware(m["started_at"]), finished_at=_aware(m["finished_at"]),
               attempts=int(m["attempts"] or 0), worker=m["worker"], cancel_requested=bool(m["cancel_requested"]),
               result=m["result"], error=m["error"], webhook_status=m["webhook_status"])


def now() -> datetime:
    return datetime.now(UTC)


async def create_run(engine: AsyncEngine, *, user: str, team: str, text: str, thread_id: str | None,
                     webhook: str | None = None, key_id: str | None = None) -> Run:
    """A queued run (its conversation is ``thread_id``, or a new one whose id is chosen now)."""
    values = {"id": "run_" + uuid.uuid4().hex, "user_identifier": user, "team": team, "input": text,
              "thread_id": thread_id or uuid.uuid4().hex, "message_id": str(uuid.uuid4()),
              "turn_id": uuid.uuid4().hex, "status": "queued", "webhook": webhook, "key_id": key_id,
              "created_at": now(), "attempts": 0, "cancel_requested": False}
    async with engine.begin() as conn:
        await conn.execute(runs.insert().values(**values))
    found = await get_run(engine, str(values["id"]))
    assert found is not None
    return found


async def get_run(engine: AsyncEngine, run_id: str, user: str | None = None) -> Run | None:
    """The run ``run_id``; None when there is none, or it is not ``user``'s (when given)."""
    query = sa.select(runs).where(runs.c.id == run_id)
    if user is not None:
        query = query.where(runs.c.user_identifier == user)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    return None if row is None else _run(row)


async def list_runs(engine: AsyncEngine, user: str | None = None, status: Sequence[str] = (),
                    limit: int = 50) -> list[Run]:
    """The newest runs first (``user``'s only, when given; of these statuses, when given)."""
    query = sa.select(runs).order_by(runs.c.created_at.desc()).limit(limit)
    if user is not None:
        query = query.where(runs.c.user_identifier == user)
    if status:
        query = query.where(runs.c.status.in_(list(status)))
    async with engine.connect() as conn:
        return [_run(row) for row in (await conn.execute(query)).all()]


async def unfinished_on_thread(engine: AsyncEngine, thread_id: str) -> str | None:
    """The id of a queued or running run in the conversation ``thread_id``, if any."""
    async with engine.connect() as conn:
        found = await conn.scalar(sa.select(runs.c.id).where(runs.c.thread_id == thread_id,
                                                             runs.c.status.notin_(FINISHED)).limit(1))
    return None if found is None else str(found)


async def queued_before(engine: AsyncEngine, moment: datetime) -> list[str]:
    """Runs still queued that were made before ``moment`` (their enqueue may have been lost)."""
    async with engine.connect() as conn:
        return [str(r) for r in await conn.scalars(sa.select(runs.c.id).where(
            runs.c.status == "queued", runs.c.created_at < moment))]


async def start_attempt(engine: AsyncEngine, run_id: str, worker: str) -> Run | None:
    """Mark the run running on ``worker`` (one more attempt); None when it is finished or gone."""
    async with engine.begin() as conn:
        await conn.execute(runs.update().where(runs.c.id == run_id, runs.c.status.in_(("queued", "running")))
                           .values(status="running", worker=worker, attempts=runs.c.attempts + 1,
                                   started_at=sa.func.coalesce(runs.c.started_at, now())))
    found = await get_run(engine, run_id)
    return found if found is not None and not found.finished else None


async def finish_run(engine: AsyncEngine, run_id: str, status: str, result: dict[str, Any] | None,
                     error: str | None = None, attempt: int | None = None) -> bool:
    """Keep how the run ended, unless it has ended already, or (given ``attempt``) a later attempt
    has begun since: the attempt that ends the run is the current one. True when kept."""
    assert status in FINISHED
    query = runs.update().where(runs.c.id == run_id, runs.c.status.notin_(FINISHED))
    if attempt is not None:
        query = query.where(runs.c.attempts == attempt)
    async with engine.begin() as conn:
        done = await conn.execute(query.values(status=status, result=result, error=error, finished_at=now()))
    return bool(done.rowcount)


async def request_cancel(engine: AsyncEngine, run_id: str) -> Run | None:
    """Ask the run to stop: a queued one is cancelled at once, a running one when its process sees
    it (within a second). Asking again changes nothing."""
    async with engine.begin() as conn:
        await conn.execute(runs.update().where(runs.c.id == run_id, runs.c.status.notin_(FINISHED))
                           .values(cancel_requested=True))
        await conn.execute(runs.update().where(runs.c.id == run_id, runs.c.status == "queued")
                           .values(status="cancelled", finished_at=now(), error="cancelled before it began"))
    return await get_run(engine, run_id)


async def cancel_requested(engine: AsyncEngine, run_id: str) -> bool:
    """Whether the run should stop: a cancel was asked for, or the run is gone (its account removed)."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(runs.c.cancel_requested).where(runs.c.id == run_id))).one_or_none()
    return row is None or bool(row[0])


async def delete_user_runs(conn: AsyncConnection, user: str) -> None:
    """Remove a user's runs, their events and journals (the account is being removed). A run of
    theirs that is executing stops at its next check (its row is gone)."""
    theirs = sa.select(runs.c.id).where(runs.c.user_identifier == user)
    await conn.execute(run_events.delete().where(run_events.c.run_id.in_(theirs)))
    await conn.execute(run_calls.delete().where(run_calls.c.run_id.in_(theirs)))
    await conn.execute(runs.delete().where(runs.c.user_identifier == user))


async def set_webhook_status(engine: AsyncEngine, run_id: str, status: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(runs.update().where(runs.c.id == run_id).values(webhook_status=status))


# -- events --------------------------------------------------------------------------------


async def last_seq(engine: AsyncEngine, run_id: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(run_events.c.seq), 0))
                                     .where(run_events.c.run_id == run_id)) or 0)


class EventsTaken(Exception):
    """Another process wrote these events first: it executes the run now."""


async def append_events(engine: AsyncEngine, run_id: str, events: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
    if not events:
        return
    moment = now()
    try:
        async with engine.begin() as conn:
            await conn.execute(run_events.insert(), [
                {"run_id": run_id, "seq": seq, "type": kind, "data": data, "created_at": moment}
                for seq, kind, data in events])
    except IntegrityError as exc:
        raise EventsTaken(run_id) from exc


async def events_after(engine: AsyncEngine, run_id: str, seq: int, limit: int = 500) -> list[tuple[int, str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(
            sa.select(run_events.c.seq, run_events.c.type, run_events.c.data)
            .where(run_events.c.run_id == run_id, run_events.c.seq > seq)
            .order_by(run_events.c.seq).limit(limit))).all()
    return [(int(r[0]), str(r[1]), r[2]) for r in rows]


# -- the journal of finished calls ---------------------------------------------------------


async def load_calls(engine: AsyncEngine, run_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(run_calls.c.key, run_calls.c.value)
                                   .where(run_calls.c.run_id == run_id))).all()
    return {str(r[0]): r[1] for r in rows}


async def record_call(engine: AsyncEngine, run_id: str, key: str, value: Any) -> None:
    try:
        async with engine.begin() as conn:
            await conn.execute(run_calls.insert().values(run_id=run_id, key=key, value=value, created_at=now()))
    except IntegrityError:
        pass  # kept already (by an attempt that stopped right after): the first one stands


# -- the processes that execute runs -------------------------------------------------------


def _is_postgres(engine: sa.Engine | AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def _seen_now(engine: sa.Engine | AsyncEngine) -> Any:
    """"Now" for a heartbeat: the database server's clock on PostgreSQL (the processes that compare
    heartbeats may run on machines whose clocks differ); on SQLite every process is on one machine."""
    return sa.func.now() if _is_postgres(engine) else now()


async def db_now(engine: AsyncEngine) -> datetime:
    """The clock heartbeats are written and judged by."""
    if not _is_postgres(engine):
        return now()
    async with engine.connect() as conn:
        moment = await conn.scalar(sa.select(sa.func.now()))
    found = _aware(moment)
    assert found is not None
    return found


async def heartbeat(engine: AsyncEngine, worker: str, host: str, pid: int, started_at: datetime) -> None:
    async with engine.begin() as conn:
        done = await conn.execute(run_workers.update().where(run_workers.c.id == worker)
                                  .values(seen_at=_seen_now(engine)))
        if done.rowcount == 0:
            await conn.execute(run_workers.insert().values(id=worker, host=host, pid=pid, started_at=started_at,
                                                           seen_at=_seen_now(engine)))


def sync_url(database_url: str) -> str:
    """The database as a synchronous SQLAlchemy URL (for the heartbeat thread)."""
    url = sa.engine.make_url(database_url)
    driver = "sqlite" if url.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return url.set(drivername=driver).render_as_string(hide_password=False)


def heartbeat_sync(engine: sa.Engine, worker: str, host: str, pid: int, started_at: datetime) -> None:
    """:func:`heartbeat` from a thread of its own: a process whose event loop is busy for a while
    (a long tool, an import) is still alive, and must not lose its runs."""
    with engine.begin() as conn:
        done = conn.execute(run_workers.update().where(run_workers.c.id == worker).values(seen_at=_seen_now(engine)))
        if done.rowcount == 0:
            conn.execute(run_workers.insert().values(id=worker, host=host, pid=pid, started_at=started_at,
                                                     seen_at=_seen_now(engine)))


async def workers(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """The heartbeat rows by process id."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(run_workers))).all()
    return {str(r._mapping["id"]): dict(r._mapping) for r in rows}


CLAIMED = "claimed-by:"


async def claim(engine: AsyncEngine, executor: str, me: str, row: dict[str, Any] | None) -> bool:
    """Become the one process that hands ``executor``'s runs back to the queue: True for exactly one
    caller. ``row`` is its heartbeat row as read (None: it has none). The claim is itself a
    heartbeat row, so a claimer that dies while at it is found stale in turn."""
    values = {"host": CLAIMED + me, "pid": 0, "seen_at": _seen_now(engine)}
    try:
        async with engine.begin() as conn:
            if row is None:
                await conn.execute(run_workers.insert().values(id=executor, started_at=now(), **values))
                return True
            done = await conn.execute(run_workers.update().where(
                run_workers.c.id == executor, run_workers.c.host == row["host"], run_workers.c.pid == row["pid"],
                run_workers.c.seen_at == row["seen_at"]).values(**values))
            return bool(done.rowcount == 1)
    except IntegrityError:
        return False  # another process inserted its claim first


async def remove_worker(engine: AsyncEngine, worker: str, claimed_by: str | None = None) -> None:
    query = run_workers.delete().where(run_workers.c.id == worker)
    if claimed_by is not None:
        query = query.where(run_workers.c.host == CLAIMED + claimed_by)
    async with engine.begin() as conn:
        await conn.execute(query)
