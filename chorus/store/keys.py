"""API keys (``chorus keys``): a program reaches the teams over HTTP with a key that acts as an account.

A key is ``chorus-`` and 43 random URL-safe characters (256 bits), printed once when it is made;
only its SHA-256 is stored (a slow hash adds nothing to a random secret of that size), with its
first characters (``prefix``) so that ``chorus keys list`` can tell keys apart. A key is its
account's: that user's memory, budgets, history and conversations apply, and removing the account
removes its keys. A key may be limited to some teams and may expire; a revoked key stays listed
(when, by whom it was used) but opens nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chorus.store import audit
from chorus.store.schema import accounts, api_keys

KEY_PREFIX = "chorus-"
SHOWN = 14  # characters of a key kept in the clear (its prefix and 7 random ones): enough to tell keys apart
_LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key


class KeyProblem(ValueError):
    """A key operation the operator asked for cannot be done; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key, as listed (never the key itself)."""

    id: str
    prefix: str
    user: str
    name: str
    teams: tuple[str, ...] | None
    """The teams it may use (by name); None = every team."""
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        now = now or datetime.now(UTC)
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and _aware(self.expires_at) <= now:
            return "expired"
        return "active"

    def allows(self, team: str) -> bool:
        return self.teams is None or team in self.teams


class KeyRefused(Exception):
    """A request's key opens nothing; ``str()`` says why, written for the program's author."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _from_row(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    teams = m["teams"]
    return ApiKey(
        id=str(m["id"]), prefix=str(m["prefix"]), user=str(m["user_identifier"]), name=str(m["name"] or ""),
        teams=tuple(str(t) for t in teams) if isinstance(teams, list) else None,
        created_at=_aware(m["created_at"]),
        expires_at=_aware(m["expires_at"]) if m["expires_at"] is not None else None,
        revoked_at=_aware(m["revoked_at"]) if m["revoked_at"] is not None else None,
        last_used_at=_aware(m["last_used_at"]) if m["last_used_at"] is not None else None,
    )


async def create_key(engine: AsyncEngine, user: str, *, name: str = "", teams: list[str] | None = None,
                     expires_at: datetime | None = None) -> tuple[str, ApiKey]:
    """Make a key for the account ``user``: (the key, shown this once; what is stored of it)."""
    user = user.strip()
    now = datetime.now(UTC)
    if expires_at is not None and _aware(expires_at) <= now:
        raise KeyProblem("the expiry date is in the past")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        if await conn.scalar(sa.select(accounts.c.identifier).where(accounts.c.identifier == user)) is None:
            raise KeyProblem(f"no user {user!r}: add the account first (chorus users add {user})")
        key_id = uuid.uuid4().hex[:12]
        await conn.execute(sa.insert(api_keys).values(
            id=key_id, key_hash=hash_key(key), prefix=key[:SHOWN], user_identifier=user, name=name.strip(),
            teams=sorted(set(teams)) if teams else None, created_at=now, expires_at=expires_at))
        row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
        await audit.record(conn, "key_created", user, {"key": key_id, "prefix": key[:SHOWN], "name": name.strip(),
                                                        "teams": sorted(set(teams)) if teams else None,
                                                        "expires_at": expires_at.isoformat() if expires_at else None})
    return key, _from_row(row)


async def list_keys(engine: AsyncEngine, user: str | None = None) -> list[ApiKey]:
    query = sa.select(api_keys).order_by(api_keys.c.user_identifier, api_keys.c.created_at)
    if user is not None:
        query = query.where(api_keys.c.user_identifier == user.strip())
    async with engine.connect() as conn:
        return [_from_row(row) for row in await conn.execute(query)]


async def revoke_key(engine: AsyncEngine, key_id: str) -> ApiKey:
    """Revoke the key with this id (or the key's prefix, as listed); revoking twice is no error."""
    key_id = key_id.strip()
    async with engine.begin() as conn:
        rows = (await conn.execute(sa.select(api_keys).where(
            sa.or_(api_keys.c.id == key_id, api_keys.c.prefix == key_id)))).all()
        if not rows:
            raise KeyProblem(f"no key {key_id!r} (see chorus keys list)")
        if len(rows) > 1:
            raise KeyProblem(f"{key_id!r} names {len(rows)} keys: give the key's id")
        found = _from_row(rows[0])
        if found.revoked_at is None:
            await conn.execute(sa.update(api_keys).where(api_keys.c.id == found.id).values(
                revoked_at=datetime.now(UTC)))
            await audit.record(conn, "key_revoked", found.user, {"key": found.id, "prefix": found.prefix})
        row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == found.id))).one()
    return _from_row(row)


async def check_key(engine: AsyncEngine, key: str) -> ApiKey:
    """The key a request carries, if it opens anything; KeyRefused says why not."""
    if not key.startswith(KEY_PREFIX):
        raise KeyRefused("This is not a Chorus API key (they start with 'chorus-'; make one with chorus keys create).")
    now = datetime.now(UTC)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == hash_key(key)))).one_or_none()
        alive = row is not None and await conn.scalar(sa.select(accounts.c.identifier).where(
            accounts.c.identifier == row._mapping["user_identifier"])) is not None
    if row is None or not alive:
        raise KeyRefused("Unknown API key.")
    found = _from_row(row)
    state = found.state(now)
    if state == "revoked":
        raise KeyRefused("This API key was revoked.")
    if state == "expired":
        assert found.expires_at is not None
        raise KeyRefused(f"This API key expired at {found.expires_at:%Y-%m-%d %H:%M} UTC.")
    if found.last_used_at is None or now - found.last_used_at >= _LAST_USED_EVERY:
        async with engine.begin() as conn:
            await conn.execute(sa.update(api_keys).where(api_keys.c.id == found.id).values(last_used_at=now))
    return found


async def delete_user_keys(conn: AsyncConnection, user: str) -> None:
    """Remove every key of ``user`` (with the account, in the same transaction)."""
    await conn.execute(sa.delete(api_keys).where(api_keys.c.user_identifier == user))


def parse_expiry(value: str, now: datetime | None = None) -> datetime:
    """``--expires``: a duration (``30d``, ``12h``, ``90m``) or a date (``2027-01-31``, UTC)."""
    now = now or datetime.now(UTC)
    value = value.strip()
    units = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}
    if value[-1:].lower() in units and value[:-1].isdigit():
        return now + timedelta(**{units[value[-1].lower()]: int(value[:-1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise KeyProblem(f"--expires {value!r}: give a duration (30d, 12h) or a date (2027-01-31)") from None
    return _aware(moment)
