"""Password accounts: scrypt hashes in ``chorus_accounts``; ``chorus users`` and the login form use them."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.store import audit
from chorus.store.files import delete_owner_files
from chorus.store.keys import delete_user_keys
from chorus.store.runs import delete_user_runs
from chorus.store.schema import (
    accounts,
    approvals,
    checkpoint_log,
    checkpoints,
    elements,
    feedbacks,
    personal_keys,
    steps,
    threads,
    turn_states,
    users,
)

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
MIN_PASSWORD = 8


class AccountError(ValueError):
    """An account operation the operator asked for cannot be done; the message says why."""


@dataclass(frozen=True)
class Account:
    identifier: str
    created_at: datetime | None
    admin: bool = False


def hash_password(password: str) -> str:
    """A salted scrypt hash, as ``scrypt$n$r$p$salt$digest`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def check_identifier(identifier: str) -> str:
    identifier = identifier.strip()
    if not _IDENTIFIER.match(identifier):
        raise AccountError(
            "a user name is 1-128 letters, digits and . _ @ + - (starting with a letter or digit)"
        )
    return identifier


async def add_account(engine: AsyncEngine, identifier: str, password: str, *, admin: bool = False) -> None:
    identifier = check_identifier(identifier)
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    async with engine.begin() as conn:
        exists = await conn.scalar(sa.select(accounts.c.identifier).where(accounts.c.identifier == identifier))
        if exists:
            raise AccountError(f"user {identifier!r} already exists")
        # sessions_after: a login token left over from an earlier account of this name opens nothing.
        await conn.execute(sa.insert(accounts).values(identifier=identifier, password_hash=hash_password(password),
                                                      sessions_after=time.time(), is_admin=admin))
        await audit.record(conn, "account_added", identifier, {"admin": admin})


async def set_admin(engine: AsyncEngine, identifier: str, admin: bool) -> None:
    """Promote an account to admin or demote it; the admin page asks the database on every request,
    so it takes effect at once, on every worker."""
    identifier = identifier.strip()
    async with engine.begin() as conn:
        result = await conn.execute(sa.update(accounts).where(accounts.c.identifier == identifier).values(
            is_admin=admin))
        if result.rowcount == 0:
            raise AccountError(f"no user {identifier!r}")
        await audit.record(conn, "admin_change", identifier, {"admin": admin})


async def is_admin(engine: AsyncEngine, identifier: str) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.scalar(sa.select(accounts.c.is_admin).where(accounts.c.identifier == identifier)))


async def change_password(engine: AsyncEngine, identifier: str, password: str) -> None:
    """Give the account a new password and end every login made with the old one."""
    identifier = identifier.strip()
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    async with engine.begin() as conn:
        result = await conn.execute(sa.update(accounts).where(accounts.c.identifier == identifier).values(
            password_hash=hash_password(password), sessions_after=time.time()))
        if result.rowcount == 0:
            raise AccountError(f"no user {identifier!r}")
        await audit.record(conn, "password_changed", identifier)


async def remove_account(engine: AsyncEngine, identifier: str, files_root: Path | None = None) -> None:
    """Remove the account and everything it owns (conversations, checkpoints, API keys, its own
    provider key, background runs, approval requests, and its files under ``files_root``): a later account with the
    same name must not inherit them."""
    identifier = identifier.strip()
    async with engine.begin() as conn:
        owner_ids = list(await conn.scalars(sa.select(users.c.id).where(users.c.identifier == identifier)))
        result = await conn.execute(sa.delete(accounts).where(accounts.c.identifier == identifier))
        if result.rowcount == 0:
            raise AccountError(f"no user {identifier!r}")
        owned = sa.select(threads.c.id).where(threads.c.userIdentifier == identifier)
        for table in (steps, elements, feedbacks):
            await conn.execute(sa.delete(table).where(table.c.threadId.in_(owned)))
        await conn.execute(sa.delete(threads).where(threads.c.userIdentifier == identifier))
        for saved in (checkpoint_log, checkpoints, turn_states):
            await conn.execute(sa.delete(saved).where(saved.c.user_identifier == identifier))
        await conn.execute(sa.delete(users).where(users.c.identifier == identifier))
        await delete_user_keys(conn, identifier)
        await conn.execute(sa.delete(personal_keys).where(personal_keys.c.user_identifier == identifier))
        await conn.execute(sa.delete(approvals).where(approvals.c.user_identifier == identifier))
        await delete_user_runs(conn, identifier)
        await audit.record(conn, "account_removed", identifier)
    if files_root is not None:
        for owner_id in owner_ids:
            await asyncio.to_thread(delete_owner_files, files_root, owner_id)


async def account_exists(engine: AsyncEngine, identifier: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(sa.select(accounts.c.identifier).where(accounts.c.identifier == identifier))
    return found is not None


async def list_accounts(engine: AsyncEngine) -> list[Account]:
    async with engine.connect() as conn:
        query = sa.select(accounts.c.identifier, accounts.c.created_at, accounts.c.is_admin).order_by(
            accounts.c.identifier)
        rows = await conn.execute(query)
        return [Account(identifier=r.identifier, created_at=r.created_at, admin=bool(r.is_admin)) for r in rows]


async def authenticate(engine: AsyncEngine, identifier: str, password: str) -> bool:
    """Whether the password is right. The same work for unknown names, and off the event loop."""
    async with engine.connect() as conn:
        stored = await conn.scalar(
            sa.select(accounts.c.password_hash).where(accounts.c.identifier == identifier.strip())
        )
    ok = await asyncio.to_thread(verify_password, password, stored or _dummy_hash())
    return ok and stored is not None


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(16))


async def has_accounts(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.scalar(sa.select(sa.func.count()).select_from(accounts)))


def accounts_exist(url: str) -> bool:
    """Whether the database at ``url`` has any account (blocking; for start-up and the CLI)."""
    from chorus.store.db import run_with_engine

    return run_with_engine(url, has_accounts)
