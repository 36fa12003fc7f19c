"""Per-user upload quotas: files and bytes per hour, and bytes of stored files in all.

The hourly counts live in the database (``chorus_uploads``, one row per accepted upload), so
every worker of a deployment sees the same figures. A reservation is made before the upload's
body is read and released again when the upload is not stored after all (wrong type, no such
session...). The check and the reservation are one transaction, serialised per user: SQLite
by its write lock (the transaction starts with its insert), PostgreSQL by an advisory lock on
the user's key, so two uploads at the same instant on two workers cannot both take the last
place.

The total is measured on what is stored: the user's folder of conversation files
(:mod:`chorus.store.files`). Deleting a conversation or an account deletes its files, and
with them their share of the total; a counter of our own would drift from that.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.settings import Settings
from chorus.store.db import StoreError
from chorus.store.files import FileStoreError, safe_key
from chorus.store.schema import uploads, users

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
MB = 1024 * 1024
PRUNE_EVERY_S = 600.0
_OWN_MAX = 4 * MB  # a turn map is a few KB; a bigger file is never read to find out

Limit = Literal["files_per_hour", "mb_per_hour", "mb_total"]


@dataclass(frozen=True)
class QuotaLimits:
    """The caps of one user; 0 means no cap."""

    files_per_hour: int = 0
    bytes_per_hour: int = 0
    bytes_total: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> QuotaLimits:
        """The caps ``CHORUS_UPLOAD_FILES_PER_HOUR`` / ``_MB_PER_HOUR`` / ``_MB_TOTAL`` set."""
        return cls(files_per_hour=settings.upload_files_per_hour,
                   bytes_per_hour=int(settings.upload_mb_per_hour * MB),
                   bytes_total=int(settings.upload_mb_total * MB))

    @property
    def hourly(self) -> bool:
        return self.files_per_hour > 0 or self.bytes_per_hour > 0

    @property
    def any(self) -> bool:
        return self.hourly or self.bytes_total > 0


@dataclass(frozen=True)
class QuotaRefusal:
    """Why an upload was refused: which limit, a message for the user, and when it frees up
    (None when waiting does not help)."""

    limit: Limit
    message: str
    retry_at: datetime | None = None

    def retry_after_s(self, now: datetime | None = None) -> int | None:
        """Whole seconds until ``retry_at`` (at least 1), or None."""
        if self.retry_at is None:
            return None
        return max(1, math.ceil((self.retry_at - (now or datetime.now(UTC))).total_seconds()))


def _mb(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB / 10 else f"{size / 1024:.0f} KB"


def _cap_mb(size: int) -> str:
    return f"{round(size / MB, 2):g} MB"  # the setting as written: 0.06, not 0.0599995


def _when(at: datetime, now: datetime) -> str:
    minutes = math.ceil((at - now).total_seconds() / 60)
    wait = "in under a minute" if minutes <= 1 else f"in {minutes} minutes"
    return f"{wait} (at {at.astimezone(UTC):%H:%M} UTC)"


def _aware(value: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; they were written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def decide(limits: QuotaLimits, size: int, recent: list[tuple[datetime, int]], stored: int,
           now: datetime) -> QuotaRefusal | None:
    """The refusal of an upload of ``size`` bytes, or None when it fits.

    ``recent`` are the user's uploads of the last hour (time, bytes), oldest first; ``stored``
    the bytes of the user's stored files. The total is checked first: waiting does not free it.
    """
    if limits.bytes_total and stored + size > limits.bytes_total:
        return QuotaRefusal("mb_total", (
            f"Storage limit reached: your stored files take {_mb(stored)} of your {_cap_mb(limits.bytes_total)}, "
            f"and this file is {_mb(size)}. Delete conversations whose files you no longer need to make room."))
    if limits.files_per_hour and len(recent) + 1 > limits.files_per_hour:
        # Room for one more once enough of the oldest uploads are over an hour old.
        frees = _aware(recent[len(recent) - limits.files_per_hour][0]) + WINDOW
        return QuotaRefusal("files_per_hour", (
            f"Upload limit reached: at most {limits.files_per_hour} files per hour. "
            f"You can upload again {_when(frees, now)}."), frees)
    used = sum(b for _t, b in recent)
    if limits.bytes_per_hour and used + size > limits.bytes_per_hour:
        cap = _cap_mb(limits.bytes_per_hour)
        if size > limits.bytes_per_hour:
            return QuotaRefusal("mb_per_hour", f"This file ({_mb(size)}) is larger than the upload limit of {cap} "
                                               "per hour.")
        frees = now
        for at, sent in recent:
            used -= sent
            if used + size <= limits.bytes_per_hour:
                frees = _aware(at) + WINDOW
                break
        return QuotaRefusal("mb_per_hour", (
            f"Upload limit reached: at most {cap} of files per hour (you sent {_mb(sum(b for _t, b in recent))} "
            f"in the last hour; this file is {_mb(size)}). You can upload again {_when(frees, now)}."), frees)
    return None


def folder_bytes(folder: Path, own: Callable[[bytes], bool] | None = None) -> int:
    """Bytes of the regular files under ``folder`` (blocking; symlinks are not followed). A file
    ``own`` recognises (a turn map Chorus drew and signed) is Chorus's, not the user's, and does
    not count."""
    total = 0
    for parent, _dirs, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            try:
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode):
                    continue
                if own is not None and info.st_size <= _OWN_MAX:
                    with open(path, "rb") as f:
                        if own(f.read()):
                            continue
            except OSError:  # deleted while we walk
                continue
            total += info.st_size
    return total


class QuotaStore:
    """Reservations against a user's upload quota, in the database ``engine`` points at."""

    def __init__(self, engine: AsyncEngine, limits: QuotaLimits, files_root: Path | None = None,
                 own: Callable[[bytes], bool] | None = None) -> None:
        self.engine = engine
        self.limits = limits
        self.files_root = files_root
        self.own = own
        self._pruned = 0.0

    async def stored_bytes(self, identifier: str | None) -> int:
        """Bytes of the stored conversation files of the user ``identifier`` (0 without one)."""
        if identifier is None or self.files_root is None or not self.limits.bytes_total:
            return 0
        async with self.engine.connect() as conn:
            user_id = (await conn.execute(
                sa.select(users.c.id).where(users.c.identifier == identifier))).scalar_one_or_none()
        if user_id is None:
            return 0
        try:
            folder = self.files_root.expanduser() / safe_key(str(user_id))
        except FileStoreError:
            return 0
        return await asyncio.to_thread(folder_bytes, folder, self.own)

    async def reserve(self, key: str, size: int, identifier: str | None = None) -> int | QuotaRefusal:
        """Count an upload of ``size`` bytes against ``key``'s quota: the reservation's id (0
        when nothing needed counting), or the refusal (nothing counted). ``identifier`` names
        the signed-in user whose stored files count towards the total."""
        try:
            stored = await self.stored_bytes(identifier)
            now = datetime.now(UTC)
            if not self.limits.hourly:  # nothing to count per hour: only the total applies
                return decide(self.limits, size, [], stored, now) or 0
            async with self.engine.connect() as conn:
                tx = await conn.begin()
                if conn.dialect.name == "postgresql":
                    await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                       {"key": "chorus_uploads:" + key})
                # On SQLite this first write takes the database's write lock until the commit.
                new_id = (await conn.execute(sa.insert(uploads).values(
                    quota_key=key, created_at=now, bytes=size).returning(uploads.c.id))).scalar_one()
                rows = (await conn.execute(
                    sa.select(uploads.c.created_at, uploads.c.bytes)
                    .where(uploads.c.quota_key == key, uploads.c.created_at > now - WINDOW, uploads.c.id != new_id)
                    .order_by(uploads.c.created_at))).all()
                refusal = decide(self.limits, size, [(r[0], int(r[1])) for r in rows], stored, now)
                if refusal is not None:
                    await tx.rollback()
                    return refusal
                await tx.commit()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"could not check the upload quota: {type(exc).__name__}: {exc}") from exc
        await self._prune()
        return int(new_id)

    async def release(self, reservation: int) -> None:
        """Forget a reservation whose upload was not stored after all."""
        if not reservation:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.delete(uploads).where(uploads.c.id == reservation))
        except Exception as exc:  # the user merely loses one place for an hour
            log.warning("could not release upload reservation %s: %s", reservation, exc)

    async def _prune(self) -> None:
        """Now and then, delete uploads older than the window (every user's)."""
        if time.monotonic() - self._pruned < PRUNE_EVERY_S:
            return
        self._pruned = time.monotonic()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.delete(uploads).where(uploads.c.created_at < datetime.now(UTC) - WINDOW))
        except Exception as exc:  # best effort: another worker prunes too
            log.info("could not prune old upload records: %s", exc)
