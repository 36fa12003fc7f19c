"""The cost ledger: one row per model call, attributed to agent, turn, thread and user.

``run_turn`` writes a turn's calls when the turn ends; budgets read what a user spent today
(UTC); ``chorus usage`` reports it grouped by agent, user, model or day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.events import CallRecord
from chorus.store import audit
from chorus.store.db import StoreError
from chorus.store.schema import budget_resets, usage

GroupBy = Literal["agent", "user", "model", "day", "thread"]


@dataclass(frozen=True)
class UsageRow:
    """One model call to record."""

    user: str
    thread_id: str
    turn_id: str
    team: str
    agent: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    latency_ms: float
    key_source: str = "operator"
    """Whose provider key paid: ``operator`` (the deployment's) or ``user`` (the user's own)."""

    @classmethod
    def of(cls, call: CallRecord, *, user: str, thread_id: str, turn_id: str, team: str,
           key_source: str = "operator") -> UsageRow:
        """The ledger's row for ``call``, made in ``turn_id`` of ``user``'s conversation with ``team``."""
        return cls(user=user, thread_id=thread_id, turn_id=turn_id, team=team, agent=call.label, model=call.model,
                   prompt_tokens=call.prompt_tokens, completion_tokens=call.completion_tokens, cost=call.cost,
                   latency_ms=call.latency_ms, key_source=key_source)


@dataclass(frozen=True)
class UsageTotal:
    """A group's totals in a report; ``unpriced`` counts calls whose price litellm did not know."""

    key: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    unpriced: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def start_of_today() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def budget_counts_from(conn: Any, user: str) -> datetime:
    """Midnight UTC, or the user's latest budget reset today."""
    today = start_of_today()
    reset = await conn.scalar(sa.select(sa.func.max(budget_resets.c.at)).where(
        budget_resets.c.user_identifier == user, budget_resets.c.at >= today))
    if reset is None:
        return today
    if isinstance(reset, str):  # SQLite without type information
        reset = datetime.fromisoformat(reset)
    found: datetime = reset if reset.tzinfo else reset.replace(tzinfo=UTC)
    return found


class UsageLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, rows: Sequence[UsageRow]) -> None:
        if not rows:
            return
        now = datetime.now(UTC)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(usage), [
                    {"created_at": now, "user_identifier": r.user, "thread_id": r.thread_id, "turn_id": r.turn_id,
                     "team": r.team, "agent": r.agent, "model": r.model, "prompt_tokens": r.prompt_tokens,
                     "completion_tokens": r.completion_tokens, "cost": r.cost, "latency_ms": r.latency_ms,
                     "key_source": r.key_source}
                    for r in rows
                ])
        except Exception as exc:
            raise StoreError(f"could not record usage: {exc}") from exc

    async def forget_turn(self, turn_id: str) -> int:
        """Remove a turn's rows (a background run that runs its turn again records every call again)."""
        async with self.engine.begin() as conn:
            return int((await conn.execute(sa.delete(usage).where(usage.c.turn_id == turn_id))).rowcount or 0)

    async def spent_today(self, user: str) -> float:
        """What ``user``'s model calls cost the deployment since midnight UTC, or since an admin reset
        their budget today (calls with no known price count 0; calls on the user's own key do not
        count: the user paid for them)."""
        async with self.engine.connect() as conn:
            since = await budget_counts_from(conn, user)
            total = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(usage.c.cost), 0.0)).where(
                    usage.c.user_identifier == user, usage.c.created_at >= since, usage.c.key_source != "user"
                )
            )
        return float(total or 0.0)

    async def reset_budget(self, user: str, by: str) -> None:
        """An admin's reset: what ``user`` spent so far today no longer counts against the budget
        (the ledger keeps every row; usage reports are unchanged)."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(budget_resets).values(user_identifier=user, at=datetime.now(UTC), by=by))
            await audit.record(conn, "admin_change", user, {"budget_reset": True})

    async def report(self, by: GroupBy = "agent", *, days: int | None = None, user: str | None = None
                     ) -> list[UsageTotal]:
        """Totals grouped ``by``, most expensive first; ``days`` limits to the last N days."""
        key: sa.ColumnElement[Any]
        if by == "day":
            key = sa.func.substr(sa.cast(usage.c.created_at, sa.Text), 1, 10)
        else:
            key = {"agent": usage.c.agent, "user": usage.c.user_identifier, "model": usage.c.model,
                   "thread": usage.c.thread_id}[by]
        query = sa.select(
            key.label("key"),
            sa.func.count().label("calls"),
            sa.func.sum(usage.c.prompt_tokens).label("prompt"),
            sa.func.sum(usage.c.completion_tokens).label("completion"),
            sa.func.coalesce(sa.func.sum(usage.c.cost), 0.0).label("cost"),
            sa.func.sum(sa.case((usage.c.cost.is_(None), 1), else_=0)).label("unpriced"),
        ).group_by(key)
        if days is not None:
            query = query.where(usage.c.created_at >= start_of_today() - timedelta(days=days - 1))
        if user is not None:
            query = query.where(usage.c.user_identifier == user)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        totals = [UsageTotal(key=str(r.key), calls=int(r.calls), prompt_tokens=int(r.prompt or 0),
                             completion_tokens=int(r.completion or 0), cost=float(r.cost or 0.0),
                             unpriced=int(r.unpriced or 0)) for r in rows]
        if by == "day":
            return sorted(totals, key=lambda t: t.key)
        return sorted(totals, key=lambda t: (-t.cost, -t.tokens, t.key))
