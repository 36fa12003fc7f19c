"""An admin's versions of each team (the admin page): append-only, one row per version.

A version holds the admin's whole patch over the team's file (:class:`chorus.teams.overlay.TeamPatch`
as JSON), who made it and when, a note, and the diff of what the team became against the version
before it. Nothing updates or deletes a row: rolling back to version 3 adds a version whose patch
is version 3's. Each new version is recorded in the audit log (``admin_change``) in the same
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.store import audit
from chorus.store.schema import team_versions


@dataclass(frozen=True)
class TeamVersion:
    team: str
    version: int
    created_at: datetime
    author: str
    note: str
    patch: dict[str, Any]
    diff: str

    def as_dict(self) -> dict[str, Any]:
        return {"team": self.team, "version": self.version, "created_at": self.created_at.isoformat(),
                "author": self.author, "note": self.note, "patch": self.patch, "diff": self.diff}


def _version(row: Any) -> TeamVersion:
    m = row._mapping
    at = m["created_at"] if m["created_at"].tzinfo else m["created_at"].replace(tzinfo=UTC)
    return TeamVersion(team=str(m["team"]), version=int(m["version"]), created_at=at, author=str(m["author"]),
                       note=str(m["note"] or ""), patch=dict(m["patch"] or {}), diff=str(m["diff"] or ""))


async def add_version(engine: AsyncEngine, team: str, patch: dict[str, Any], *, author: str, note: str = "",
                      diff: str = "", expected: int | None = None) -> TeamVersion:
    """Store the next version of ``team``. With ``expected`` (the version the admin edited), a
    version saved meanwhile by someone else makes this fail with :class:`VersionConflict`."""
    async with engine.begin() as conn:
        latest = int(await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(team_versions.c.version), 0)).where(
            team_versions.c.team == team)) or 0)
        if expected is not None and expected != latest:
            raise VersionConflict(f"team {team!r} is at version {latest} now, not {expected}: reload and edit again")
        now = datetime.now(UTC)
        values: dict[str, Any] = {"team": team, "version": latest + 1, "created_at": now, "author": author,
                  "note": note, "patch": patch, "diff": diff}
        try:
            await conn.execute(sa.insert(team_versions).values(**values))
        except sa.exc.IntegrityError:  # two saves in the same instant: the other one won
            raise VersionConflict(f"team {team!r} changed meanwhile: reload and edit again") from None
        await audit.record(conn, "admin_change", team, {"team_version": latest + 1, "note": note, "diff": diff[:4000]},
                           who=author)
    return TeamVersion(team=team, version=latest + 1, created_at=now, author=author, note=note,
                       patch=patch, diff=diff)


class VersionConflict(RuntimeError):
    """The team changed since the admin loaded it."""


async def versions(engine: AsyncEngine, team: str) -> list[TeamVersion]:
    """``team``'s versions, newest first."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(team_versions).where(team_versions.c.team == team).order_by(
            team_versions.c.version.desc()))).all()
    return [_version(r) for r in rows]


async def version(engine: AsyncEngine, team: str, number: int) -> TeamVersion | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(team_versions).where(
            team_versions.c.team == team, team_versions.c.version == number))).first()
    return _version(row) if row is not None else None


async def newest_id(engine: AsyncEngine) -> tuple[int, int]:
    """(the newest version's id, how many versions there are): cheap to ask before each new chat.
    Both, because on PostgreSQL a version can commit after one with a higher id."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(sa.func.coalesce(sa.func.max(team_versions.c.id), 0),
                                            sa.func.count()).select_from(team_versions))).one()
    return int(row[0] or 0), int(row[1] or 0)


async def current(engine: AsyncEngine) -> dict[str, TeamVersion]:
    """Each team's newest version."""
    newest = sa.select(team_versions.c.team, sa.func.max(team_versions.c.version).label("v")).group_by(
        team_versions.c.team).subquery()
    query = sa.select(team_versions).join(newest, sa.and_(team_versions.c.team == newest.c.team,
                                                          team_versions.c.version == newest.c.v))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {v.team: v for v in map(_version, rows)}
