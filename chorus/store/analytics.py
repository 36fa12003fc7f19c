"""What the admin page's usage charts show, read from the cost ledger and Chainlit's feedback.

Every figure comes from ``chorus_usage`` (one row per model call: user, team, agent, tokens, cost,
latency) and ``feedbacks`` (a user's thumbs up or down on a reply, joined to the reply's step for
its agent and to the ledger for its team). Days are UTC dates.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.store.schema import feedbacks, steps, usage
from chorus.store.usage import budget_counts_from, start_of_today


@dataclass
class Totals:
    cost: float = 0.0
    tokens: int = 0
    calls: int = 0


@dataclass
class Thumbs:
    up: int = 0
    down: int = 0

    @property
    def ratio(self) -> float:
        """The share of thumbs up (0 to 1)."""
        return self.up / (self.up + self.down) if self.up + self.down else 0.0


@dataclass
class Usage:
    days: list[str]
    per_day: dict[str, Totals]
    turns_per_day: dict[str, int]
    latency_p50: dict[str, float]
    """Milliseconds per model call, each day."""
    latency_p95: dict[str, float]
    per_team: dict[str, Totals] = field(default_factory=dict)
    per_agent: dict[str, Totals] = field(default_factory=dict)
    per_user: dict[str, Totals] = field(default_factory=dict)
    thumbs_team: dict[str, Thumbs] = field(default_factory=dict)
    thumbs_agent: dict[str, Thumbs] = field(default_factory=dict)


def _p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=20, method="inclusive")[18]


async def usage_report(engine: AsyncEngine, days: int = 14) -> Usage:
    """The last ``days`` days (today included)."""
    first = start_of_today() - timedelta(days=days - 1)
    day_names = [(first + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(days)]
    query = sa.select(usage.c.created_at, usage.c.user_identifier, usage.c.team, usage.c.agent, usage.c.turn_id,
                      usage.c.prompt_tokens, usage.c.completion_tokens, usage.c.cost, usage.c.latency_ms,
                      usage.c.thread_id).where(usage.c.created_at >= first)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        thumbs = (await conn.execute(
            sa.select(feedbacks.c.value, feedbacks.c.threadId, steps.c.name)
            .join(steps, steps.c.id == feedbacks.c.forId))).all()
        threads = {t for _, t, _ in thumbs}
        team_of: dict[str, str] = {}
        if threads:
            for thread_id, team in (await conn.execute(
                    sa.select(usage.c.thread_id, usage.c.team).where(usage.c.thread_id.in_(threads)).distinct())).all():
                team_of[str(thread_id)] = str(team)
    report = Usage(days=day_names, per_day={d: Totals() for d in day_names}, turns_per_day=dict.fromkeys(day_names, 0),
                   latency_p50=dict.fromkeys(day_names, 0.0), latency_p95=dict.fromkeys(day_names, 0.0))
    turns: dict[str, set[str]] = defaultdict(set)
    latencies: dict[str, list[float]] = defaultdict(list)
    groups: list[tuple[dict[str, Totals], int]] = [(report.per_team, 2), (report.per_user, 1), (report.per_agent, 3)]
    for row in rows:
        at = row[0]
        day = (at.astimezone(UTC) if isinstance(at, datetime) and at.tzinfo else at)
        day = day.strftime("%Y-%m-%d") if isinstance(day, datetime) else str(day)[:10]
        if day not in report.per_day:
            continue
        tokens = int(row.prompt_tokens or 0) + int(row.completion_tokens or 0)
        cost = float(row.cost or 0.0)
        for totals in [report.per_day[day]] + [g.setdefault(str(row[i]), Totals()) for g, i in groups]:
            totals.cost += cost
            totals.tokens += tokens
            totals.calls += 1
        turns[day].add(str(row.turn_id))
        latencies[day].append(float(row.latency_ms or 0.0))
    for day in day_names:
        report.turns_per_day[day] = len(turns[day])
        if latencies[day]:
            report.latency_p50[day] = statistics.median(latencies[day])
            report.latency_p95[day] = _p95(latencies[day])
    for value, thread_id, agent in thumbs:
        for key, into in ((team_of.get(str(thread_id), "?"), report.thumbs_team), (str(agent), report.thumbs_agent)):
            counted = into.setdefault(key, Thumbs())
            if int(value) == 1:
                counted.up += 1
            else:
                counted.down += 1
    return report


async def spent_today(engine: AsyncEngine) -> dict[str, Any]:
    """Each user's spending that counts against today's budget (since midnight UTC or a reset)."""
    async with engine.connect() as conn:
        users = [str(u) for u in await conn.scalars(sa.select(usage.c.user_identifier).where(
            usage.c.created_at >= start_of_today()).distinct())]
        spent: dict[str, Any] = {}
        for user in users:
            since = await budget_counts_from(conn, user)
            spent[user] = float(await conn.scalar(sa.select(sa.func.coalesce(sa.func.sum(usage.c.cost), 0.0)).where(
                usage.c.user_identifier == user, usage.c.created_at >= since, usage.c.key_source != "user")) or 0.0)
    return spent
