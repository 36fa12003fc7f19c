"""The team's saved state, so a conversation outlives the process that held it.

Two kinds of state per thread, both keyed to the thread's owner:

- the *checkpoint*: the team after the latest turn, which a resumed conversation continues from;
- *turn states*: the team before each user message, which an edit of that message rewinds to
  (the last :data:`KEEP_TURN_STATES` of each thread are kept).

A team's state holds the whole conversation (several times: the group chat's thread and each
agent's model context), so a turn must not write it whole: each save appends one row to
``chorus_checkpoint_log`` with only what changed since the state it follows (its *parent*),
mostly the turn's new messages; the checkpoint and the turn states point at log rows. A row is a
whole state (a *keyframe*) for a thread's first save, when its parent is unknown, and when the
changes since the last keyframe outweigh it (:data:`KEYFRAME_AFTER_BYTES`), so that reading a
state back costs at most a few times its size. Rows written before the log (migration 0006) hold
whole states and are read as such.

:class:`~chorus.store.team_states.TeamStates` is the other half: it gives what AutoGen's
``team.save_state()`` gives, but dumps only the messages that are new since its previous call.
"""

from __future__ import annotations

import functools
import json
import logging
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chorus.store.db import StoreError
from chorus.store.schema import checkpoint_log, checkpoints, turn_states

log = logging.getLogger(__name__)

KEEP_TURN_STATES = 50
LOAD_ATTEMPTS = 3  # reads of the latest state, when a concurrent save pruned what was read
KEYFRAME_AFTER_BYTES = 1 << 20
"""A save writes a whole state again once the changes since the last one pass this many bytes
and twice that state's size."""

_dumps = functools.partial(json.dumps, default=str, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, eq=False)
class Saved:
    """A team state as the store holds it: later saves write only what changed against it."""

    team: str
    state: Mapping[str, Any]
    seq: int | None = None
    """Its row in chorus_checkpoint_log; None for a whole state written before the log."""
    base_bytes: int = 0
    delta_bytes: int = 0


def _state(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)


# --- what changed between two states -----------------------------------------------------------
#
# A change is one JSON object: {"set": value} (replaced), {"append": [items]} (a list grew by
# these), or {"patch": {key: change}, "drop": [keys]} (a mapping, key by key). Items that are the
# same object in both states (TeamStates reuses the earlier dumps) compare at no cost.


def diff(old: Any, new: Any) -> dict[str, Any] | None:
    """What turns ``old`` into ``new``; None when they are equal."""
    if new is old:
        return None
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        patch: dict[str, Any] = {}
        for key, value in new.items():
            if key in old:
                change = diff(old[key], value)
                if change is not None:
                    patch[key] = change
            else:
                patch[key] = {"set": value}
        dropped = [key for key in old if key not in new]
        if not patch and not dropped:
            return None
        return {"patch": patch, "drop": dropped} if dropped else {"patch": patch}
    if isinstance(old, list) and isinstance(new, list):
        if len(new) >= len(old) and (all(map(operator.is_, old, new))  # the usual case, at C speed
                                     or all(a is b or _same(a, b) for a, b in zip(old, new, strict=False))):
            return None if len(new) == len(old) else {"append": new[len(old):]}
        return {"set": new}
    return None if _same(old, new) else {"set": new}


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # True == 1, but a state that changed one for the other changed


def patch(state: Any, change: Mapping[str, Any]) -> Any:
    """``state`` with ``change`` applied, *in place* (only for states read from the store)."""
    if "set" in change:
        return change["set"]
    if "append" in change:
        if not isinstance(state, list):
            raise ValueError("a change appends to what is not a list")
        state.extend(change["append"])
        return state
    if not isinstance(state, dict):
        raise ValueError("a change patches what is not a mapping")
    for key, sub in change.get("patch", {}).items():
        state[key] = patch(state.get(key), sub)
    for key in change.get("drop", ()):
        state.pop(key, None)
    return state


# --- the store ---------------------------------------------------------------------------------


@dataclass
class _Row:
    seq: int
    parent: int | None
    data: str
    base_bytes: int
    delta_bytes: int
    state: Mapping[str, Any]


class CheckpointStore:
    """Saves and loads AutoGen team state by thread, keyed to the thread's owner."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save(
        self,
        thread_id: str,
        user: str,
        team: str,
        state: Mapping[str, Any],
        *,
        before: tuple[str, Mapping[str, Any] | Saved] | None = None,
        parent: Saved | None = None,
    ) -> tuple[Saved, Saved | None]:
        """Save the team's state after a turn and, with ``before=(message_id, state)``, its state
        before that turn's user message, in one transaction.

        ``parent`` is a state saved earlier (the one this turn started from): only the changes
        against it are written. ``before`` given as a :class:`Saved` of this thread is stored as
        a reference to it. Returns what was saved: the new checkpoint, and the state before the
        message (None without ``before``), to pass as ``parent`` and ``before`` next time.
        """
        try:
            async with self.engine.begin() as conn:
                return await self._save(conn, thread_id, user, team, state, before, parent)
        except Exception as exc:
            raise StoreError(f"could not save the team's state for thread {thread_id}: {exc}") from exc

    async def _save(
        self, conn: AsyncConnection, thread_id: str, user: str, team: str, state: Mapping[str, Any],
        before: tuple[str, Mapping[str, Any] | Saved] | None, parent: Saved | None,
    ) -> tuple[Saved, Saved | None]:
        key = (checkpoint_log.c.thread_id == thread_id, checkpoint_log.c.user_identifier == user)
        wanted = sorted({s.seq for s in (parent, before[1] if before else None)
                         if isinstance(s, Saved) and s.seq is not None})
        # One round trip: the last row's number, the current checkpoint, and whether the rows
        # this save would write changes against are still there (an edit elsewhere may prune).
        top, old_head, *found = (await conn.execute(sa.select(
            sa.select(sa.func.max(checkpoint_log.c.seq)).where(*key).scalar_subquery(),
            sa.select(checkpoints.c.head).where(checkpoints.c.thread_id == thread_id,
                                                checkpoints.c.user_identifier == user).scalar_subquery(),
            *[sa.exists().where(*key, checkpoint_log.c.seq == seq) for seq in wanted],
        ))).one()
        present = {seq for seq, there in zip(wanted, found, strict=True) if there}
        next_seq = (top or 0) + 1
        rows: list[_Row] = []

        def stored(saved: Saved | None) -> Saved | None:
            return saved if saved is not None and saved.seq in present else None

        def add(new_state: Mapping[str, Any], base: Saved | None) -> Saved:
            nonlocal next_seq
            row = _row(next_seq, new_state, base)
            if row is None:  # nothing changed since ``base``: it is the saved state
                assert base is not None
                return base
            rows.append(row)
            next_seq += 1
            return Saved(team, new_state, row.seq, row.base_bytes, row.delta_bytes)

        base = stored(parent)
        before_saved: Saved | None = None
        if before is not None:
            earlier = before[1]
            before_saved = stored(earlier) if isinstance(earlier, Saved) else None
            if before_saved is None:
                before_saved = add(earlier.state if isinstance(earlier, Saved) else earlier, base)
            base = before_saved
        head = add(state, base)

        values = {"user_identifier": user, "team": team, "state": sa.null(), "head": head.seq,
                  "updated_at": sa.func.now()}
        updated = await conn.execute(
            sa.update(checkpoints)
            .where(checkpoints.c.thread_id == thread_id, checkpoints.c.user_identifier == user)
            .values(**values)
        )
        if updated.rowcount == 0:
            await conn.execute(sa.insert(checkpoints).values(thread_id=thread_id, **values))
        now = datetime.now(UTC)
        if rows:
            await conn.execute(sa.insert(checkpoint_log), [
                {"thread_id": thread_id, "seq": r.seq, "user_identifier": user, "parent": r.parent, "data": r.data,
                 "base_bytes": r.base_bytes, "delta_bytes": r.delta_bytes, "created_at": now} for r in rows
            ])
        if before is not None:
            assert before_saved is not None
            await self._save_before(conn, thread_id, user, team, before[0], before_saved.seq, now)
        first_parent = rows[0].parent if rows else head.seq
        if any(r.parent is None for r in rows) or (old_head is not None and old_head != first_parent):
            await self._prune(conn, thread_id, user)  # a keyframe, or a new branch (an edit): older rows may go
        return head, before_saved

    async def _save_before(
        self, conn: AsyncConnection, thread_id: str, user: str, team: str, message_id: str, seq: int | None,
        now: datetime,
    ) -> None:
        key = (turn_states.c.thread_id == thread_id, turn_states.c.user_identifier == user)
        await conn.execute(sa.delete(turn_states).where(*key, turn_states.c.message_id == message_id))
        await conn.execute(
            sa.insert(turn_states).values(
                thread_id=thread_id, message_id=message_id, user_identifier=user, team=team, state=sa.null(), seq=seq,
                created_at=now,
            )
        )
        keep = (
            sa.select(turn_states.c.message_id).where(*key)
            .order_by(turn_states.c.created_at.desc()).limit(KEEP_TURN_STATES)
        )
        await conn.execute(sa.delete(turn_states).where(*key, turn_states.c.message_id.not_in(keep)))

    async def _prune(self, conn: AsyncConnection, thread_id: str, user: str) -> None:
        """Delete the log rows that neither the checkpoint nor a kept turn state is built from."""
        key = (checkpoint_log.c.thread_id == thread_id, checkpoint_log.c.user_identifier == user)
        parents = {seq: parent for seq, parent in await conn.execute(
            sa.select(checkpoint_log.c.seq, checkpoint_log.c.parent).where(*key))}
        mine = (turn_states.c.thread_id == thread_id, turn_states.c.user_identifier == user)
        roots = set(await conn.scalars(sa.select(turn_states.c.seq).where(*mine, turn_states.c.seq.is_not(None))))
        head = await conn.scalar(sa.select(checkpoints.c.head).where(
            checkpoints.c.thread_id == thread_id, checkpoints.c.user_identifier == user))
        if head is not None:
            roots.add(head)
        needed: set[int] = set()
        for root in roots:
            seq: int | None = root
            while seq is not None and seq in parents and seq not in needed:
                needed.add(seq)
                seq = parents[seq]
        garbage = sorted(set(parents) - needed)
        for start in range(0, len(garbage), 500):
            chunk = garbage[start:start + 500]
            await conn.execute(sa.delete(checkpoint_log).where(*key, checkpoint_log.c.seq.in_(chunk)))

    async def _read(self, conn: AsyncConnection, thread_id: str, user: str, team: str, seq: int,
                    quiet: bool = False) -> Saved | None:
        """The state in log row ``seq``: its keyframe with every change after it applied."""
        key = (checkpoint_log.c.thread_id == thread_id, checkpoint_log.c.user_identifier == user)
        parents = {s: p for s, p in await conn.execute(sa.select(checkpoint_log.c.seq, checkpoint_log.c.parent)
                                                       .where(*key, checkpoint_log.c.seq <= seq))}
        chain: list[int] = []
        at: int | None = seq
        while at is not None:
            if at not in parents or len(chain) > len(parents):
                if not quiet:
                    log.error("the saved state %s of thread %s is missing a row (%s)", seq, thread_id, at)
                return None
            chain.append(at)
            at = parents[at]
        rows = {s: (data, base, delta) for s, data, base, delta in await conn.execute(
            sa.select(checkpoint_log.c.seq, checkpoint_log.c.data, checkpoint_log.c.base_bytes,
                      checkpoint_log.c.delta_bytes).where(*key, checkpoint_log.c.seq.in_(chain)))}
        chain.reverse()
        state: Any = json.loads(rows[chain[0]][0])
        for at in chain[1:]:
            state = patch(state, json.loads(rows[at][0]))
        _, base_bytes, delta_bytes = rows[seq]
        return Saved(team, state, seq, int(base_bytes), int(delta_bytes))

    async def load(self, thread_id: str, user: str) -> Saved | None:
        """The team's state after the latest turn of ``thread_id`` if ``user`` owns it, else None.

        Read again when a save of another session of the thread (another tab, a page reopened)
        moved the head and pruned the rows of the one first read between the two reads."""
        for attempt in range(LOAD_ATTEMPTS):
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        sa.select(checkpoints.c.team, checkpoints.c.state, checkpoints.c.head).where(
                            checkpoints.c.thread_id == thread_id, checkpoints.c.user_identifier == user
                        )
                    )
                ).first()
                if row is None:
                    return None
                if row.head is None:
                    return None if row.state is None else Saved(str(row.team), _state(row.state))
                found = await self._read(conn, thread_id, user, str(row.team), int(row.head),
                                         quiet=attempt + 1 < LOAD_ATTEMPTS)
            if found is not None:
                return found
        return None

    async def rewind_to(self, thread_id: str, user: str, message_id: str) -> Saved | None:
        """The team's state before ``message_id``, forgetting the turn states that came after it;
        None when that message's state is not kept (or ``user`` does not own the thread)."""
        key = (turn_states.c.thread_id == thread_id, turn_states.c.user_identifier == user)
        async with self.engine.connect() as conn:  # most messages are new: a read, no write
            row = (
                await conn.execute(
                    sa.select(turn_states.c.team, turn_states.c.state, turn_states.c.seq, turn_states.c.created_at)
                    .where(*key, turn_states.c.message_id == message_id)
                )
            ).first()
            if row is None:
                return None
            if row.seq is not None:
                saved = await self._read(conn, thread_id, user, str(row.team), int(row.seq))
            else:
                saved = None if row.state is None else Saved(str(row.team), _state(row.state))
        if saved is None:
            return None
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(turn_states).where(*key, turn_states.c.created_at > row.created_at))
        return saved

    async def forget_after(self, thread_id: str, user: str, message_id: str) -> None:
        """Forget the turn states that came after ``message_id`` (an edit of it abandoned them)."""
        key = (turn_states.c.thread_id == thread_id, turn_states.c.user_identifier == user)
        then = sa.select(turn_states.c.created_at).where(*key, turn_states.c.message_id == message_id)
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(turn_states).where(*key, turn_states.c.created_at > then.scalar_subquery()))

    async def forget(self, thread_id: str) -> None:
        """Delete every saved state of ``thread_id`` (the thread was deleted)."""
        async with self.engine.begin() as conn:
            for table in (checkpoint_log, turn_states, checkpoints):
                await conn.execute(sa.delete(table).where(table.c.thread_id == thread_id))


def _row(seq: int, state: Mapping[str, Any], base: Saved | None) -> _Row | None:
    """The log row for ``state``: its changes against ``base`` (None when there are none), or
    the whole state when there is no base or the changes since the last keyframe outweigh it."""
    if base is not None and base.seq is not None:
        change = diff(base.state, state)
        if change is None:
            return None
        data = _dumps(change)
        size = len(data.encode())
        delta_bytes = base.delta_bytes + size
        if delta_bytes <= max(KEYFRAME_AFTER_BYTES, 2 * base.base_bytes):
            return _Row(seq, base.seq, data, base.base_bytes, delta_bytes, state)
    data = _dumps(state)
    return _Row(seq, None, data, len(data.encode()), 0, state)
