"""The store layer: real Chinook, the generated demo store, PostgreSQL, read-only, bad URLs."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import chorus_music_store as plugin
import pytest
import sqlalchemy as sa
from chorus_music_store import _demo, _schema
from chorus_music_store._store import MusicStore, StoreError, read_only_engine, resolve_url
from music_store_fixtures import IN_CI, chinook_path

from chorus.testing import ChorusFactory


@pytest.fixture
def chinook() -> MusicStore:
    return MusicStore(f"sqlite:///{chinook_path()}", "chinook")


def test_catalog_queries_on_the_real_chinook(chinook: MusicStore) -> None:
    artist = chinook.find_artists("ac/dc")
    assert artist == [(1, "AC/DC")]
    assert [title for _a, title, _n in chinook.albums_of([1])] == [
        "For Those About To Rock We Salute You", "Let There Be Rock"]
    black_dog = chinook.find_tracks("black dog")
    assert {t["album"] for t in black_dog} == {"IV", "BBC Sessions [Disc 2] [Live]"}
    assert all(t["artist"] == "Led Zeppelin" for t in black_dog)
    jazz = chinook.tracks(genre_ids=[g for g, _ in chinook.find_genres("jazz")], limit=25)
    assert len(jazz) == 25 and {t["genre"] for t in jazz} == {"Jazz"}
    # Best sellers first: the counts never increase down the list.
    assert [t["sold"] for t in jazz] == sorted((t["sold"] for t in jazz), reverse=True)
    # Text that looks like SQL is only ever a value.
    assert chinook.find_tracks("x' OR '1'='1") == []
    assert chinook.find_artists("%") == []


def test_customers_are_found_by_id_email_or_phone_and_invoices_are_theirs(chinook: MusicStore) -> None:
    by_email = chinook.find_customer("email", "LUISG@embraer.com.br")
    assert by_email is not None and by_email.id == 1 and by_email.name == "Luís Gonçalves"
    assert chinook.find_customer("phone", "+55 12 3923 5555") == by_email
    assert chinook.find_customer("id", "1") == by_email
    assert chinook.find_customer("id", "99999") is None
    assert chinook.find_customer("email", "' OR 1=1 --") is None
    count, rows = chinook.invoices(1)
    assert count == 7
    assert [r["invoice"] for r in rows] == [382, 327, 316, 195, 143, 121, 98]  # newest first
    assert [r["date"] for r in rows] == sorted((r["date"] for r in rows), reverse=True)
    assert chinook.invoice_of(1, 1) is None  # invoice 1 is customer 2's
    own = chinook.invoice_of(1, 98)
    assert own is not None and own["employee"]["name"] == "Jane Peacock"
    prices = [r["unit_price"] for r in chinook.purchases_by_unit_price(1)]
    assert prices[0] == "$1.99" and prices == sorted(prices, reverse=True)


def test_the_store_is_opened_read_only(tmp_path: Path) -> None:
    copy = tmp_path / "chinook.sqlite"
    copy.write_bytes(chinook_path().read_bytes())
    engine = read_only_engine(f"sqlite:///{copy}")
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.OperationalError, match=r"readonly|read-only|query_only"):
            conn.execute(sa.text("DELETE FROM Customer"))
    finally:
        engine.dispose()
    assert sqlite3.connect(copy).execute("SELECT count(*) FROM Customer").fetchone() == (59,)


def test_demo_store_is_generated_by_code_and_is_the_same_everywhere(tmp_path: Path) -> None:
    first = _demo.ensure_demo_store(tmp_path / "a")
    second = _demo.ensure_demo_store(tmp_path / "b")
    assert first.name == f"demo-v{_demo.DEMO_VERSION}.sqlite"
    dump = [sqlite3.connect(p).execute("SELECT * FROM Invoice ORDER BY InvoiceId").fetchall() for p in (first, second)]
    assert dump[0] == dump[1] and len(dump[0]) > 40
    store = MusicStore(f"sqlite:///{first}", "demo")
    assert [title for _a, title, _n in store.albums_of([a for a, _ in store.find_artists("AC/DC")])] == [
        "For Those About To Rock We Salute You", "Let There Be Rock"]
    ana = store.find_customer("email", "ana.souza@example.com")
    assert ana is not None and ana.id == 1
    count, rows = store.invoices(1)
    assert count == len(rows) >= 3
    assert {t["genre"] for t in store.tracks(genre_ids=[g for g, _ in store.find_genres("Jazz")])} == {"Jazz"}
    # Written once: a second start reuses the file.
    mtime = first.stat().st_mtime_ns
    assert _demo.ensure_demo_store(tmp_path / "a") == first and first.stat().st_mtime_ns == mtime
    assert resolve_url(None, tmp_path / "a") == (f"sqlite:///{first}", "the demo store")


def test_a_missing_database_fails_the_plugin_with_its_reason_and_the_rest_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_chorus: ChorusFactory) -> None:
    monkeypatch.setenv(plugin.URL_SETTING, str(tmp_path / "nowhere.sqlite"))
    registry = make_chorus(installed=None).registry  # every installed plugin
    report = registry.report_for("music_store")
    assert report is not None and report.status == "error"
    assert "no database file at" in (report.error or "") and "nowhere.sqlite" in (report.error or "")
    assert "music-store" not in registry.teams
    assert registry.report_for("assistant").status == "ok"  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="not a database URL"):
        resolve_url("postgresql://user@host:notaport/db", tmp_path)


def test_a_database_that_goes_away_gets_a_clear_answer(tmp_path: Path) -> None:
    copy = tmp_path / "gone.sqlite"
    copy.write_bytes(chinook_path().read_bytes())
    store = MusicStore(f"sqlite:///{copy}", "gone.sqlite")
    copy.unlink()
    with pytest.raises(StoreError, match=r"no database file at .*gone\.sqlite"):
        store.find_tracks("Black Dog")


def _copy_to_postgres(url: str, tables: _schema.ChinookTables) -> None:
    """The Chinook tables this plugin reads, copied into the PostgreSQL database at ``url`` and
    named as ``tables`` names them."""
    source = sa.create_engine(f"sqlite:///{chinook_path()}")
    target = sa.create_engine(url)
    try:
        tables.metadata.create_all(target)
        with source.connect() as read, target.begin() as write:
            for name in ("artist", "album", "genre", "media_type", "track", "employee", "customer", "invoice",
                         "invoice_line"):
                src, dst = getattr(_schema.CAMEL, name), getattr(tables, name)
                rows = [dict(r._mapping) for r in read.execute(sa.select(src))]  # keyed by CamelCase keys
                write.execute(dst.insert(), rows)
    finally:
        source.dispose()
        target.dispose()


@pytest.mark.parametrize("snake_case", [False, True], ids=["CamelCase", "snake_case"])
def test_the_same_queries_on_postgresql_read_only(snake_case: bool) -> None:
    admin_url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"chinook_{uuid.uuid4().hex[:10]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc.orig})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        tables = _schema.tables(snake_case=snake_case)
        _copy_to_postgres(url.replace("postgresql://", "postgresql+psycopg://"), tables)
        # A URL's own options are kept next to the read-only one.
        store = MusicStore(url + "?options=-c%20statement_timeout%3D5000", "chinook in PostgreSQL")
        assert store.tables.snake_case is snake_case
        assert [t for _a, t, _n in store.albums_of([a for a, _ in store.find_artists("AC/DC")])] == [
            "For Those About To Rock We Salute You", "Let There Be Rock"]
        assert {t["album"] for t in store.find_tracks("Black Dog")} == {"IV", "BBC Sessions [Disc 2] [Live]"}
        customer = store.find_customer("email", "luisg@embraer.com.br")
        assert customer is not None
        assert [r["invoice"] for r in store.invoices(customer.id)[1]][:3] == [382, 327, 316]
        assert store.invoice_of(customer.id, 98)["employee"]["name"] == "Jane Peacock"  # type: ignore[index]
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "5s"
            with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
                conn.execute(sa.text(f"DELETE FROM {tables.invoice_line.fullname!s}"
                                     if snake_case else 'DELETE FROM "InvoiceLine"'))
        store.close()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_database_without_chinook_tables_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("CREATE TABLE notes (id INTEGER)").connection.commit()
    with pytest.raises(StoreError, match="no Chinook tables"):
        MusicStore(f"sqlite:///{empty}", str(empty)).find_tracks("x")
