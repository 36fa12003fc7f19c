"""Storage on a real SQLite file and a real PostgreSQL server: migrations, accounts, checkpoints, data layer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import fresh_postgres_database

from chorus.models import scripted_model
from chorus.settings import Settings
from chorus.store import StoreError, database_url, make_engine, upgrade
from chorus.store.accounts import (
    AccountError,
    accounts_exist,
    add_account,
    authenticate,
    list_accounts,
    remove_account,
    verify_password,
)
from chorus.store.checkpoints import CheckpointStore
from chorus.store.db import current_revision
from chorus.teams import TeamCatalog, TeamSpec
from chorus.turn import Chorus, run_turn


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = database_url(Settings(home=tmp_path / "home"))
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    return url


def test_default_database_is_a_sqlite_file_in_the_data_directory(tmp_path: Path) -> None:
    url = database_url(Settings(home=tmp_path / "home"))
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'home' / 'chorus.db'}"
    upgrade(url)
    assert (tmp_path / "home" / "chorus.db").exists()
    assert current_revision(url) is not None

    async def journal_mode() -> str:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return str(await conn.scalar(sa.text("PRAGMA journal_mode")))
        finally:
            await engine.dispose()

    assert asyncio.run(journal_mode()) == "wal"


def test_database_url_accepts_plain_driver_names() -> None:
    assert database_url(Settings(database_url="postgresql://u:p@db/chorus")) == "postgresql+asyncpg://u:p@db/chorus"


def test_migrations_are_idempotent_and_build_exactly_the_schema(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from chorus.store.db import _alembic_config
    from chorus.store.schema import metadata

    upgrade(db_url)  # a second run changes nothing
    head = ScriptDirectory.from_config(_alembic_config(db_url)).get_current_head()
    assert current_revision(db_url) == head

    async def inspect() -> tuple[dict[str, set[str]], list[Any]]:
        engine = make_engine(db_url)
        try:
            async with engine.connect() as conn:
                def read(c: sa.Connection) -> tuple[dict[str, set[str]], list[Any]]:
                    inspector = sa.inspect(c)
                    cols = {t: {col["name"] for col in inspector.get_columns(t)} for t in inspector.get_table_names()}
                    diff = compare_metadata(MigrationContext.configure(c), metadata)
                    return cols, [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table"
                                                          and d[1].name == "alembic_version")]

                return await conn.run_sync(read)
        finally:
            await engine.dispose()

    columns_by_table, diff = asyncio.run(inspect())
    assert diff == [], "the migrations and chorus.store.schema disagree"
    assert {"users", "threads", "steps", "elements", "feedbacks", "chorus_accounts", "chorus_checkpoints",
            "chorus_turn_states"} <= set(columns_by_table)
    assert {"command", "modes", "defaultOpen", "autoCollapse", "icon", "showInput"} <= columns_by_table["steps"]


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="could not migrate the database"):
        upgrade("postgresql+asyncpg://nobody@127.0.0.1:1/none")


def test_accounts(db_url: str) -> None:
    async def scenario() -> None:
        engine = make_engine(db_url)
        try:
            await add_account(engine, "alice", "correct horse")
            assert await authenticate(engine, "alice", "correct horse")
            assert not await authenticate(engine, "alice", "wrong password")
            assert not await authenticate(engine, "mallory", "correct horse")
            with pytest.raises(AccountError, match="already exists"):
                await add_account(engine, "alice", "another password")
            with pytest.raises(AccountError, match="at least 8"):
                await add_account(engine, "bob", "short")
            with pytest.raises(AccountError, match="user name"):
                await add_account(engine, "bad name!", "long enough")
            assert [a.identifier for a in await list_accounts(engine)] == ["alice"]
            stored = await engine.connect()
            try:
                hashed = await stored.scalar(sa.text("SELECT password_hash FROM chorus_accounts"))
            finally:
                await stored.close()
            assert "correct horse" not in hashed and verify_password("correct horse", hashed)
            await remove_account(engine, "alice")
            with pytest.raises(AccountError, match="no user"):
                await remove_account(engine, "alice")
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert not accounts_exist(db_url)


SOLO = TeamSpec(name="solo", type="round_robin", members=["assistant"], default=True)


def _chorus() -> Chorus:
    settings = Settings(model="scripted", plugins="assistant")
    base = Chorus.load(settings)
    return Chorus(settings=settings, registry=base.registry, catalog=TeamCatalog(teams={"solo": SOLO}))


def test_resumed_conversation_gives_the_model_the_earlier_turns(db_url: str) -> None:
    async def scenario() -> None:
        engine = make_engine(db_url)
        store = CheckpointStore(engine)
        scripted_model.reset()
        try:
            first = _chorus().open_session(user_id="alice", thread_id="t-1", checkpoints=store)
            scripted_model.queue("Noted: your favourite band is Queen.")
            [e async for e in run_turn(first, "My favourite band is Queen.")]

            # A new process: a fresh Chorus and session for the same thread.
            again = _chorus().open_session(user_id="alice", thread_id="t-1", checkpoints=store)
            assert await again.resume()
            scripted_model.queue("Queen, as you told me.")
            events = [e async for e in run_turn(again, "Which band did I say?")]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert "My favourite band is Queen." in seen and "Noted: your favourite band is Queen." in seen
            assert events[-1].type == "done"

            # Another user cannot load alice's thread, even knowing its id.
            intruder = _chorus().open_session(user_id="mallory", thread_id="t-1", checkpoints=store)
            assert not await intruder.resume()
        finally:
            scripted_model.reset()
            await engine.dispose()

    asyncio.run(scenario())


def test_editing_a_message_from_before_a_restart_rewinds_the_team(db_url: str) -> None:
    async def scenario() -> None:
        engine = make_engine(db_url)
        store = CheckpointStore(engine)
        scripted_model.reset()
        try:
            first = _chorus().open_session(user_id="alice", thread_id="t-edit", checkpoints=store)
            scripted_model.queue("Hello Ann.", "Jazz it is.", "Noted.")
            for mid, text in [("m1", "My name is Ann."), ("m2", "I like jazz."), ("m3", "I live in Oslo.")]:
                [e async for e in run_turn(first, text, message_id=mid)]

            # A new process resumes the thread; the user edits their second message.
            again = _chorus().open_session(user_id="alice", thread_id="t-edit", checkpoints=store)
            assert await again.resume()
            scripted_model.queue("Blues it is.")
            events = [e async for e in run_turn(again, "I like blues.", message_id="m2")]
            assert any(e.type == "notice" and e.code == "rewound" for e in events)  # type: ignore[attr-defined]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert "My name is Ann." in seen and "I like blues." in seen
            assert "I like jazz." not in seen and "I live in Oslo." not in seen

            # The rewound branch is gone: editing m3 (now forgotten) is a plain new message.
            scripted_model.queue("Bergen, then.")
            events = [e async for e in run_turn(again, "I live in Bergen.", message_id="m3")]
            assert not any(e.type == "notice" for e in events)
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert "I like blues." in seen and "I live in Oslo." not in seen

            # Nobody else can rewind alice's thread, and forgetting it removes every saved state.
            assert await store.rewind_to("t-edit", "mallory", "m1") is None
            await store.forget("t-edit")
            assert await store.rewind_to("t-edit", "alice", "m1") is None
            assert await store.load("t-edit", "alice") is None
        finally:
            scripted_model.reset()
            await engine.dispose()

    asyncio.run(scenario())


def test_data_layer_round_trip_and_sql_errors_are_not_swallowed(db_url: str) -> None:
    from chainlit.user import User

    from chorus.store.caller import begin_request
    from chorus.store.datalayer import ChorusDataLayer

    async def scenario() -> None:
        begin_request("alice")  # as the page's request would: every write is checked against its caller
        layer = ChorusDataLayer(db_url)
        try:
            user = await layer.create_user(User(identifier="alice", metadata={"provider": "password"}))
            assert user is not None and user.identifier == "alice"
            thread_id = str(uuid.uuid4())
            await layer.update_thread(thread_id, name="Music talk", user_id=user.id, tags=["Chorus"])
            step = {
                "id": str(uuid.uuid4()), "threadId": thread_id, "name": "assistant", "type": "assistant_message",
                "output": "Hello", "streaming": False, "createdAt": "2026-11-21T10:00:00Z",
                "modes": {"a": "b"}, "defaultOpen": False, "autoCollapse": False, "icon": None,
            }
            await layer.execute_sql(  # create_step waits for a user message in Chainlit's context; insert directly
                'INSERT INTO steps ("id", "threadId", "name", "type", "output", "streaming", "createdAt", "modes") '
                "VALUES (:id, :threadId, :name, :type, :output, :streaming, :createdAt, :modes)",
                {k: step[k] for k in ("id", "threadId", "name", "type", "output", "streaming", "createdAt", "modes")},
            )
            thread = await layer.get_thread(thread_id)
            assert thread is not None and thread["name"] == "Music talk" and thread["tags"] == ["Chorus"]
            assert [s["output"] for s in thread["steps"]] == ["Hello"]
            assert await layer.get_thread_author(thread_id) == "alice"
            with pytest.raises(StoreError, match="could not save"):
                await layer.execute_sql('INSERT INTO steps ("nonexistent") VALUES (:x)', {"x": 1})
            # Thread ids come from the client and Chainlit pastes stored ones into SQL: only UUIDs are stored.
            with pytest.raises(StoreError, match="not a UUID"):
                await layer.update_thread("x') OR ('1'='1", user_id=user.id)

            # Removing the account removes what it owned: a new 'alice' inherits nothing.
            engine = make_engine(db_url)
            try:
                await add_account(engine, "alice", "correct horse")
                await CheckpointStore(engine).save(thread_id, "alice", "solo", {"x": 1})
                await remove_account(engine, "alice")
                assert await layer.get_thread(thread_id) is None
                assert await CheckpointStore(engine).load(thread_id, "alice") is None
            finally:
                await engine.dispose()
        finally:
            await layer.engine.dispose()

    asyncio.run(scenario())


def test_resume_into_a_team_whose_members_changed_starts_afresh(db_url: str) -> None:
    async def scenario() -> None:
        engine = make_engine(db_url)
        store = CheckpointStore(engine)
        try:
            await store.save("t-2", "alice", "solo", {"type": "TeamState", "agent_states": {"ghost": {}}})
            session = _chorus().open_session(user_id="alice", thread_id="t-2", checkpoints=store)
            assert not await session.resume()
            scripted_model.reset()
            scripted_model.queue("fresh start")
            events = [e async for e in run_turn(session, "hello")]
            assert events[-1].type == "done" and any(e.type == "message" for e in events)
        finally:
            scripted_model.reset()
            await engine.dispose()

    asyncio.run(scenario())


def test_the_data_layer_refuses_writes_to_what_is_not_the_callers(db_url: str) -> None:
    """The ownership checks every route and socket event passes through, on both databases."""
    from chainlit.types import Feedback
    from chainlit.user import User

    from chorus.store.caller import NotYours, begin_request, trusted_writes
    from chorus.store.datalayer import ChorusDataLayer

    async def as_user(name: str, action: Any) -> Any:
        async def run() -> Any:
            begin_request(name)
            return await action()

        return await asyncio.create_task(run())  # a task of its own: its own caller, like a request

    async def scenario() -> None:
        layer = ChorusDataLayer(db_url)
        try:
            alice = await layer.create_user(User(identifier="alice"))
            await layer.create_user(User(identifier="bob"))
            assert alice is not None
            thread, step = str(uuid.uuid4()), str(uuid.uuid4())
            await as_user("alice", lambda: layer.update_thread(thread, name="mine"))  # owned from its first row
            assert await layer.get_thread_author(thread) == "alice"
            with trusted_writes():  # Chainlit's create_step waits for a user message; insert directly
                await layer.execute_sql(
                    'INSERT INTO steps ("id", "threadId", "name", "type", "output", "streaming", "createdAt") '
                    "VALUES (:id, :t, 'User', 'user_message', 'hi', :f, '2026-12-01T10:00:00Z')",
                    {"id": step, "t": thread, "f": False})
            feedback = await as_user("alice", lambda: layer.upsert_feedback(Feedback(forId=step, value=1)))
            bobs = str(uuid.uuid4())
            for attempt in (
                lambda: layer.update_thread(thread, name="bob's now"),
                lambda: layer.update_thread(bobs, user_id=alice.id),  # giving a thread to someone else
                lambda: layer.delete_thread(thread),
                lambda: layer.create_step({"id": step, "threadId": bobs, "type": "user_message", "output": "moved"}),
                lambda: layer.delete_step(step),
                lambda: layer.upsert_feedback(Feedback(forId=step, value=0)),
                lambda: layer.upsert_feedback(Feedback(forId=step, value=0, id=feedback)),
                lambda: layer.delete_feedback(feedback),
            ):
                with pytest.raises(NotYours):
                    await as_user("bob", attempt)
            with pytest.raises(NotYours):  # no caller at all: refused, not trusted
                await asyncio.create_task(layer.update_thread(thread, name="nobody's"))
            rows = await layer.execute_sql('SELECT "threadId" AS t FROM steps WHERE "id" = :id', {"id": step})
            assert rows == [{"t": thread}]
            got = await layer.get_thread(thread)
            assert got is not None and got["name"] == "mine"
            assert await layer.execute_sql('SELECT "value" FROM feedbacks WHERE "id" = :id', {"id": feedback}) == [
                {"value": 1}]
            await as_user("alice", lambda: layer.delete_thread(thread))  # the owner still can
            assert await layer.get_thread(thread) is None
        finally:
            await layer.engine.dispose()

    asyncio.run(scenario())


# --- the checkpoint log: what a turn writes does not grow with the conversation ------------------

CHECKPOINT_TABLES = ("chorus_checkpoints", "chorus_checkpoint_log", "chorus_turn_states")


async def _stored(engine: Any, thread_id: str) -> str:
    """Everything the checkpoint tables hold for ``thread_id``, as text."""
    parts = []
    async with engine.connect() as conn:
        for table in CHECKPOINT_TABLES:
            rows = await conn.execute(sa.text(f"SELECT * FROM {table} WHERE thread_id = :t"), {"t": thread_id})
            parts += [str(value) for row in rows for value in row if value is not None]
    return "\n".join(parts)


async def _rows(engine: Any, thread_id: str) -> dict[str, int]:
    async with engine.connect() as conn:
        return {table: (await conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE thread_id = :t"),
                                           {"t": thread_id})).scalar_one() for table in CHECKPOINT_TABLES}


def _sent_bytes(engine: Any) -> list[int]:
    """A counter of the bytes of text every statement on ``engine`` sends (what is written)."""
    sent = [0]

    def size(value: Any) -> int:
        if isinstance(value, str):
            return len(value.encode())
        if isinstance(value, bytes):
            return len(value)
        if isinstance(value, dict):
            return sum(size(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(size(v) for v in value)
        return 0

    sa.event.listen(engine.sync_engine, "before_cursor_execute",
                    lambda conn, cursor, sql, params, context, many: sent.__setitem__(0, sent[0] + size(params)))
    return sent


def test_a_turn_writes_as_much_at_200_messages_of_history_as_at_10(db_url: str) -> None:
    """The operator's database grows with what is said, not with its square: a turn stores the
    turn, whatever the length of the conversation, and the conversation still resumes whole and
    rewinds to an early message after a restart."""

    async def scenario() -> None:
        engine = make_engine(db_url)
        store = CheckpointStore(engine)
        sent = _sent_bytes(engine)
        scripted_model.reset()
        scripted_model.default = "An answer of a dozen words or so, the same length every turn."
        try:
            session = _chorus().open_session(user_id="alice", thread_id="t-long", checkpoints=store)
            per_turn: list[int] = []
            stored_at: dict[int, int] = {}
            for turn in range(1, 101):  # 2 messages a turn: 200 messages of history at the end
                before = sent[0]
                events = [e async for e in run_turn(session, f"Message number {turn:03d}.", message_id=f"m{turn}")]
                assert not any(e.type == "notice" for e in events), events
                per_turn.append(sent[0] - before)
                if turn in (10, 100):
                    stored_at[turn] = len(await _stored(engine, "t-long"))
            early, late = sorted(per_turn[5:10])[2], sorted(per_turn[95:100])[2]
            assert late < 1.5 * early, (early, late)  # the old whole-state checkpoint: over 10 times
            # Linear: 10 times the turns, about 10 times the bytes (it was about 50 times, with
            # the last 50 turn states each holding the whole conversation).
            assert stored_at[100] < 15 * stored_at[10], stored_at

            again = _chorus().open_session(user_id="alice", thread_id="t-long", checkpoints=store)
            assert await again.resume()
            [e async for e in run_turn(again, "What was my first message?", message_id="m101")]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert "Message number 001." in seen and "Message number 100." in seen

            # Another process rewinds to before message 60: the model sees 1-59 and the new text.
            other = _chorus().open_session(user_id="alice", thread_id="t-long", checkpoints=store)
            assert await other.resume()
            events = [e async for e in run_turn(other, "Message sixty, edited.", message_id="m60")]
            assert any(e.type == "notice" and e.code == "rewound" for e in events)  # type: ignore[attr-defined]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert "Message number 059." in seen and "Message sixty, edited." in seen
            assert "Message number 060." not in seen and "Message number 100." not in seen
        finally:
            scripted_model.reset()
            await engine.dispose()

    asyncio.run(scenario())


def test_an_edit_forgets_the_abandoned_turns_in_the_store_across_keyframes(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With whole states rewritten often (a tiny keyframe threshold), resume and edits still
    find every state, and the turns an edit abandoned are gone from the database."""
    from chorus.store import checkpoints as module

    monkeypatch.setattr(module, "KEYFRAME_AFTER_BYTES", 1)

    async def scenario() -> None:
        engine = make_engine(db_url)
        store = CheckpointStore(engine)
        scripted_model.reset()
        try:
            first = _chorus().open_session(user_id="alice", thread_id="t-branch", checkpoints=store)
            texts = ["My name is Ann.", "I like jazz.", "I live in Oslo.", "I have a cat.", "I play chess."]
            for n, text in enumerate(texts, 1):
                scripted_model.queue(f"Reply {n}.")
                [e async for e in run_turn(first, text, message_id=f"m{n}")]
            scripted_model.queue("Blues it is.")  # the same process edits its second message
            events = [e async for e in run_turn(first, "I like blues.", message_id="m2")]
            assert any(e.type == "notice" and e.code == "rewound" for e in events)  # type: ignore[attr-defined]
            for n, text in enumerate(["I live in Bergen.", "I have a dog."], 3):
                scripted_model.queue(f"New reply {n}.")
                [e async for e in run_turn(first, text, message_id=f"n{n}")]

            stored = await _stored(engine, "t-branch")
            for gone in ("I like jazz.", "I live in Oslo.", "I have a cat.", "I play chess.", "Reply 5."):
                assert gone not in stored, gone
            assert "I like blues." in stored and "I have a dog." in stored

            again = _chorus().open_session(user_id="alice", thread_id="t-branch", checkpoints=store)
            assert await again.resume()
            scripted_model.queue("Ann, blues, Bergen, a dog.")
            [e async for e in run_turn(again, "Sum me up.", message_id="n5")]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert {"My name is Ann.", "I like blues.", "I live in Bergen.", "I have a dog."} <= set(seen)
            assert "I like jazz." not in seen and "I play chess." not in seen
            scripted_model.queue("Bergen again.")  # and the restarted process rewinds past the edit
            [e async for e in run_turn(again, "I live in Tromsø.", message_id="n3")]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert "I like blues." in seen and "I live in Tromsø." in seen
            assert "I live in Bergen." not in seen and "I have a dog." not in seen
        finally:
            scripted_model.reset()
            await engine.dispose()

    asyncio.run(scenario())


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield database_url(Settings(home=tmp_path / "home"))
    else:
        with fresh_postgres_database() as url:
            yield url


def test_checkpoints_saved_before_the_log_still_resume_and_rewind(unmigrated_url: str) -> None:
    """A database of the previous release (whole states in chorus_checkpoints and
    chorus_turn_states) upgrades, and its conversations resume and rewind as before."""
    from datetime import UTC, datetime, timedelta

    from chorus.store.schema import checkpoints, turn_states

    async def old_states() -> tuple[Any, Any, Any]:
        session = _chorus().open_session(user_id="alice", thread_id="t-old")
        assert session.built is not None
        team = session.built.team
        fresh = await team.save_state()
        scripted_model.queue("Hello Ann.", "Jazz it is.")
        [e async for e in run_turn(session, "My name is Ann.")]
        after_one = await team.save_state()
        [e async for e in run_turn(session, "I like jazz.")]
        return fresh, after_one, await team.save_state()

    async def scenario() -> None:
        fresh, after_one, latest = await old_states()
        engine = make_engine(unmigrated_url)
        try:
            async with engine.begin() as conn:  # rows as the release before migration 0006 wrote them
                await conn.execute(sa.insert(checkpoints).values(
                    thread_id="t-old", user_identifier="alice", team="solo", state=latest, updated_at=sa.func.now()))
                for age, (mid, state) in enumerate([("m1", fresh), ("m2", after_one)]):
                    await conn.execute(sa.insert(turn_states).values(
                        thread_id="t-old", message_id=mid, user_identifier="alice", team="solo", state=state,
                        created_at=datetime.now(UTC) - timedelta(minutes=10 - age)))
        finally:
            await engine.dispose()
        upgrade(unmigrated_url)

        engine = make_engine(unmigrated_url)
        store = CheckpointStore(engine)
        try:
            again = _chorus().open_session(user_id="alice", thread_id="t-old", checkpoints=store)
            assert await again.resume()
            scripted_model.queue("You are Ann and like jazz.")
            [e async for e in run_turn(again, "Who am I?", message_id="m3")]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert "My name is Ann." in seen and "I like jazz." in seen

            other = _chorus().open_session(user_id="alice", thread_id="t-old", checkpoints=store)
            assert await other.resume()
            scripted_model.queue("Blues it is.")
            events = [e async for e in run_turn(other, "I like blues.", message_id="m2")]
            assert any(e.type == "notice" and e.code == "rewound" for e in events)  # type: ignore[attr-defined]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert "My name is Ann." in seen and "I like blues." in seen and "I like jazz." not in seen

            async with engine.connect() as conn:  # the thread has moved to the log
                head, state = (await conn.execute(sa.text(
                    "SELECT head, state FROM chorus_checkpoints WHERE thread_id = 't-old'"))).one()
            assert head is not None and state is None
            last = _chorus().open_session(user_id="alice", thread_id="t-old", checkpoints=store)
            assert await last.resume()
            scripted_model.queue("Blues.")
            [e async for e in run_turn(last, "What do I like?", message_id="m4")]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert "I like blues." in seen and "I like jazz." not in seen
        finally:
            scripted_model.reset()
            await engine.dispose()

    scripted_model.reset()
    upgrade(unmigrated_url, "0005")
    asyncio.run(scenario())


def test_deleting_a_conversation_or_its_account_leaves_none_of_its_saved_states(db_url: str) -> None:
    from chainlit.user import User

    from chorus.store.caller import begin_request
    from chorus.store.datalayer import ChorusDataLayer

    async def talk(store: CheckpointStore, thread_id: str) -> None:
        session = _chorus().open_session(user_id="carol", thread_id=thread_id, checkpoints=store)
        for n in range(3):
            scripted_model.queue(f"Reply {n}.")
            [e async for e in run_turn(session, f"Secret {n}.", message_id=f"{thread_id}-{n}")]

    async def scenario() -> None:
        begin_request("carol")
        layer = ChorusDataLayer(db_url)
        engine = make_engine(db_url)
        store = CheckpointStore(engine)
        scripted_model.reset()
        try:
            user = await layer.create_user(User(identifier="carol", metadata={"provider": "password"}))
            assert user is not None
            await add_account(engine, "carol", "correct horse")
            deleted, kept = str(uuid.uuid4()), str(uuid.uuid4())
            for thread_id in (deleted, kept):
                await layer.update_thread(thread_id, name="talk", user_id=user.id)
                await talk(store, thread_id)
                assert all(await _rows(engine, thread_id)), await _rows(engine, thread_id)

            await layer.delete_thread(deleted)  # the page's delete
            assert await _rows(engine, deleted) == dict.fromkeys(CHECKPOINT_TABLES, 0)
            assert all((await _rows(engine, kept)).values())
            await remove_account(engine, "carol")  # the operator's
            assert await _rows(engine, kept) == dict.fromkeys(CHECKPOINT_TABLES, 0)
        finally:
            scripted_model.reset()
            await engine.dispose()
            await layer.engine.dispose()

    asyncio.run(scenario())


def test_a_failed_checkpoint_is_a_notice_and_the_next_one_saves_what_it_missed(tmp_path: Path) -> None:
    url = database_url(Settings(home=tmp_path / "home"))
    upgrade(url)

    async def scenario() -> None:
        engine = make_engine(url)
        store = CheckpointStore(engine)
        scripted_model.reset()
        try:
            session = _chorus().open_session(user_id="alice", thread_id="t-fail", checkpoints=store)
            scripted_model.queue("Hello Ann.", "Jazz it is.", "Oslo, noted.")
            [e async for e in run_turn(session, "My name is Ann.", message_id="m1")]
            async with engine.begin() as conn:  # the disk fills up in the middle of the save
                await conn.execute(sa.text("CREATE TRIGGER full BEFORE INSERT ON chorus_checkpoint_log "
                                           "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"))
            events = [e async for e in run_turn(session, "I like jazz.", message_id="m2")]
            notice = next(e for e in events if e.type == "notice")
            assert notice.code == "checkpoint_failed" and "disk is full" in notice.text  # type: ignore[attr-defined]
            assert any(e.type == "message" and e.content == "Jazz it is." for e in events)  # type: ignore[attr-defined]
            async with engine.begin() as conn:
                await conn.execute(sa.text("DROP TRIGGER full"))
            events = [e async for e in run_turn(session, "I live in Oslo.", message_id="m3")]
            assert not any(e.type == "notice" for e in events)

            again = _chorus().open_session(user_id="alice", thread_id="t-fail", checkpoints=store)
            assert await again.resume()
            scripted_model.queue("Ann, jazz, Oslo.")
            [e async for e in run_turn(again, "Sum me up.", message_id="m4")]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert {"My name is Ann.", "I like jazz.", "Jazz it is.", "I live in Oslo."} <= set(seen)
            scripted_model.queue("Blues it is.")  # the state before m3 was saved with it
            [e async for e in run_turn(again, "I like Oslo and blues.", message_id="m3")]
            seen = [m.get("content") for m in scripted_model.requests[-1].messages]
            assert "I like jazz." in seen and "I live in Oslo." not in seen
        finally:
            scripted_model.reset()
            await engine.dispose()

    asyncio.run(scenario())
