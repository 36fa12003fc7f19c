"""Tool calls waiting for a person, in SQL (README, "Approvals").

A row is made when an agent asks to run a tool that needs approval: ``pending`` until its user
answers (``approved``, ``denied``), its time runs out (``expired``) or its turn is stopped by the user
(``cancelled``). ``used`` marks an answer a turn has acted on: an answer given while no turn was
waiting (after a reload or a restart) stays unused until the turn that goes on with the request
finds it. Only the row's own user may answer it; to anyone else it does not exist.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.store.schema import approvals

STATUSES = ("pending", "approved", "denied", "expired", "cancelled")
ANSWERED = ("approved", "denied")


class ApprovalError(ValueError):
    """An answer that cannot be taken: unknown (or another user's), already answered, or expired."""


@dataclass(frozen=True)
class Approval:
    id: str
    thread_id: str
    user: str
    team: str
    agent: str
    tool: str
    arguments: dict[str, Any]
    request: str
    run_id: str | None
    status: str
    reason: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    used: bool

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    def to_dict(self) -> dict[str, Any]:
        """What the API shows of it."""
        return {
            "id": self.id, "thread_id": self.thread_id, "team": self.team, "agent": self.agent, "tool": self.tool,
            "arguments": self.arguments, "request": self.request, "run_id": self.run_id, "status": self.status,
            "reason": self.reason, "created_at": self.created_at.isoformat(), "expires_at": self.expires_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }


def canonical(arguments: Mapping[str, Any]) -> str:
    """The arguments as stored and compared: JSON with sorted keys."""
    return json.dumps(dict(arguments), sort_keys=True, default=str)


def now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _row(row: Any) -> Approval:
    try:
        arguments = json.loads(row.arguments)
    except ValueError:
        arguments = {}
    created, expires = _aware(row.created_at), _aware(row.expires_at)
    assert created is not None and expires is not None
    return Approval(id=row.id, thread_id=row.thread_id, user=row.user_identifier, team=row.team, agent=row.agent,
                    tool=row.tool, arguments=arguments if isinstance(arguments, dict) else {}, request=row.request,
                    run_id=row.run_id, status=row.status, reason=row.reason, created_at=created, expires_at=expires,
                    decided_at=_aware(row.decided_at), decided_by=row.decided_by, used=bool(row.used))


async def create(engine: AsyncEngine, *, thread_id: str, user: str, team: str, agent: str, tool: str,
                 arguments: Mapping[str, Any], request: str, timeout_s: float, run_id: str | None = None) -> Approval:
    """A new pending request to run ``tool`` with ``arguments``, open for ``timeout_s`` seconds."""
    made, approval_id = now(), uuid.uuid4().hex
    values = dict(id=approval_id, thread_id=thread_id, user_identifier=user, team=team, agent=agent, tool=tool,
                  arguments=canonical(arguments), request=request[:4000], run_id=run_id, status="pending", reason="",
                  created_at=made, expires_at=made + timedelta(seconds=timeout_s), used=False)
    async with engine.begin() as conn:
        await conn.execute(approvals.insert().values(**values))
    found = await get(engine, approval_id)
    assert found is not None
    return found


async def get(engine: AsyncEngine, approval_id: str, *, user: str | None = None) -> Approval | None:
    """The request ``approval_id`` (None when there is none, or it is not ``user``'s when given)."""
    query = sa.select(approvals).where(approvals.c.id == approval_id)
    if user is not None:
        query = query.where(approvals.c.user_identifier == user)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return _row(row) if row is not None else None


async def decide(engine: AsyncEngine, approval_id: str, *, user: str, approved: bool, reason: str = "") -> Approval:
    """``user``'s answer to their own pending request; ApprovalError (with a sentence for them) when
    it cannot be taken. Only one answer wins, whoever gives it first (two tabs, two workers)."""
    status = "approved" if approved else "denied"
    moment = now()
    async with engine.begin() as conn:
        done = await conn.execute(
            approvals.update()
            .where(approvals.c.id == approval_id, approvals.c.user_identifier == user,
                   approvals.c.status == "pending", approvals.c.expires_at > moment)
            .values(status=status, reason=reason.strip()[:500], decided_at=moment, decided_by=user))
    found = await get(engine, approval_id, user=user)
    if found is None:
        raise ApprovalError("There is no such approval request.")
    if done.rowcount == 0:
        if found.pending:  # its time ran out: it counts as a denial
            await settle(engine, approval_id, "expired")
            raise ApprovalError("This request expired before it was answered; the tool was not run.")
        raise ApprovalError(f"This request was already {found.status}.")
    return found


async def settle(engine: AsyncEngine, approval_id: str, status: str, *, used: bool = True) -> bool:
    """End a pending request without an answer (``expired``, ``cancelled``); False if it was answered."""
    async with engine.begin() as conn:
        done = await conn.execute(approvals.update().where(approvals.c.id == approval_id,
                                                           approvals.c.status == "pending")
                                  .values(status=status, decided_at=now(), used=used))
    return bool(done.rowcount)


async def mark_used(engine: AsyncEngine, approval_id: str) -> bool:
    """A turn acts on the answer: True for the one turn that claims it first."""
    async with engine.begin() as conn:
        done = await conn.execute(approvals.update().where(approvals.c.id == approval_id,
                                                           approvals.c.used.is_(False))
                                  .values(used=True))
    return bool(done.rowcount)


async def standing(engine: AsyncEngine, *, thread_id: str, tool: str, arguments: Mapping[str, Any],
                   run_id: str | None = None, within_s: float = 600.0) -> Approval | None:
    """An earlier request for this very call in this conversation (or run) that no turn has acted on:
    answered while no turn waited (a reload, a restart) within the last ``within_s`` seconds, or still
    pending and not expired. The newest first. A conversation's requests and a run's are apart."""
    moment = now()
    fresh = sa.or_(
        sa.and_(approvals.c.status == "pending", approvals.c.expires_at > moment),
        sa.and_(approvals.c.status.in_(ANSWERED), approvals.c.decided_at > moment - timedelta(seconds=within_s)),
    )
    query = (sa.select(approvals)
             .where(approvals.c.thread_id == thread_id, approvals.c.tool == tool,
                    approvals.c.arguments == canonical(arguments), approvals.c.used.is_(False), fresh,
                    approvals.c.run_id == run_id if run_id is not None else approvals.c.run_id.is_(None))
             .order_by(approvals.c.created_at.desc()).limit(1))
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return _row(row) if row is not None else None


async def listed(engine: AsyncEngine, *, user: str, thread_id: str | None = None, run_id: str | None = None,
                 status: str | None = None, limit: int = 50) -> list[Approval]:
    """``user``'s requests (of one conversation or run), newest first; pending ones past their time are
    marked ``expired`` first."""
    moment = now()
    async with engine.begin() as conn:
        await conn.execute(approvals.update().where(approvals.c.user_identifier == user,
                                                    approvals.c.status == "pending", approvals.c.expires_at <= moment)
                           .values(status="expired", decided_at=moment, used=True))
    query = sa.select(approvals).where(approvals.c.user_identifier == user)
    if thread_id is not None:
        query = query.where(approvals.c.thread_id == thread_id)
    if run_id is not None:
        query = query.where(approvals.c.run_id == run_id)
    if status is not None:
        query = query.where(approvals.c.status == status)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(approvals.c.created_at.desc()).limit(limit))).all()
    return [_row(r) for r in rows]
