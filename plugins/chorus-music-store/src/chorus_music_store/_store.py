"""The store's database: opened read-only from a SQLAlchemy URL, queried with bound parameters.

``CHORUS_MUSIC_STORE_URL`` names any database with the Chinook schema (a SQLite path works
too); unset, the generated demo store (``_demo``) is used. Every query here is built with
SQLAlchemy Core from ``_schema``'s tables, so no text from a user or a model is ever pasted
into SQL. The connection itself is read-only too (SQLite ``mode=ro`` and ``query_only``,
PostgreSQL ``default_transaction_read_only``, MySQL ``SET SESSION TRANSACTION READ ONLY``),
so even a bug here could not change the store.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, desc, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from chorus_music_store._schema import CAMEL, SNAKE, ChinookTables

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The store's database cannot be opened or read; the message says why and what to do."""


def resolve_url(value: str | None, home: Path) -> tuple[str, str]:
    """(SQLAlchemy URL, what to call it in messages) for the setting's ``value``.

    ``None``/empty builds the demo store under ``home``; a value without ``://`` is a path
    to a SQLite file.
    """
    if not value or not value.strip():
        from chorus_music_store._demo import ensure_demo_store

        path = ensure_demo_store(home)
        return f"sqlite:///{path}", "the demo store"
    value = value.strip()
    if "://" not in value:
        path = Path(value).expanduser()
        return f"sqlite:///{path}", str(path)
    try:
        url = make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"CHORUS_MUSIC_STORE_URL is not a database URL: {exc}") from None
    return value, url.render_as_string(hide_password=True)


def read_only_engine(value: str) -> Engine:
    """A SQLAlchemy engine for ``value`` that cannot write."""
    url = make_url(value)
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:":
            raise StoreError("CHORUS_MUSIC_STORE_URL must name a SQLite file, not an in-memory database")
        path = Path(database).expanduser().resolve()
        if not path.is_file():
            raise StoreError(f"no database file at {path} (CHORUS_MUSIC_STORE_URL)")
        # mode=ro: the driver opens the file read-only (and never creates it).
        engine = create_engine(f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true")

        @event.listens_for(engine, "connect")
        def _query_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only = ON")

        return engine
    try:
        if backend == "postgresql":
            if url.drivername == "postgresql":
                url = url.set(drivername="postgresql+psycopg")
            # Kept with the URL's own options (such as -csearch_path=chinook), not instead of them.
            options = " ".join(filter(None, [str(url.query.get("options") or ""),
                                             "-c default_transaction_read_only=on"]))
            return create_engine(url.difference_update_query(["options"]), pool_pre_ping=True,
                                 connect_args={"options": options})
        engine = create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        extra = " (pip install 'chorus-music-store[postgresql]')" if backend == "postgresql" else ""
        raise StoreError(f"the database driver for {url.drivername} is not installed{extra}: {exc}") from None
    if backend in ("mysql", "mariadb"):
        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.close()
    else:
        log.warning("music store: cannot make a %s connection read-only; its tools only read anyway", backend)
    return engine


def fold(text: str) -> str:
    """Lower case, accents and runs of spaces removed: how names are compared."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


@dataclass(frozen=True)
class Customer:
    id: int
    first_name: str
    last_name: str
    email: str
    phone: str | None
    city: str | None
    country: str | None
    support_rep_id: int | None

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


IdentityKind = Literal["id", "email", "phone"]


def phone_digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def same_phone(a: str, b: str) -> bool:
    """Two ways of writing one phone number: the shorter is the end of the longer (country and
    area codes may be left out), with at least 7 digits."""
    short, long = sorted((phone_digits(a), phone_digits(b)), key=len)
    return len(short) >= 7 and long.endswith(short)


def _money(value: Any) -> str:
    return f"${Decimal(str(value)):.2f}"


def _day(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.strftime("%Y-%m-%d")
    return str(value)[:10]


def _duration(ms: int | None) -> str:
    seconds = (ms or 0) // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


class MusicStore:
    """Read-only queries over one Chinook database. Methods block: call them from a thread."""

    def __init__(self, url: str, label: str) -> None:
        self.url = url
        self.label = label
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._tables: ChinookTables | None = None
        self._artists: list[tuple[int, str]] | None = None
        self._genres: list[tuple[int, str]] | None = None

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = read_only_engine(self.url)
            return self._engine

    @property
    def tables(self) -> ChinookTables:
        """The store's Chinook tables, CamelCase or snake_case, as the database names them."""
        if self._tables is None:
            from sqlalchemy import inspect

            try:
                names = set(inspect(self.engine).get_table_names())
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"the music store's database ({self.label}) could not be read: "
                                 f"{type(exc).__name__}: {exc}") from exc
            if {"Artist", "Track", "Invoice"} <= names:
                self._tables = CAMEL
            elif {"artist", "track", "invoice"} <= names:
                self._tables = SNAKE
            else:
                raise StoreError(f"the database at {self.label} has no Chinook tables (Artist, Track, "
                                 "Invoice, ... in CamelCase or snake_case)")
        return self._tables

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def _rows(self, statement: Any) -> Sequence[Any]:
        try:
            with self.engine.connect() as conn:
                return conn.execute(statement).all()
        except StoreError:
            raise
        except Exception as exc:
            log.error("music store query failed on %s: %s", self.label, exc)
            raise StoreError(f"the music store's database ({self.label}) could not be read: "
                             f"{type(exc).__name__}") from exc

    # -- names ------------------------------------------------------------------------------

    def artists(self) -> list[tuple[int, str]]:
        """Every artist (id, name); read once."""
        t = self.tables
        if self._artists is None:
            rows = self._rows(select(t.artist.c.ArtistId, t.artist.c.Name).where(t.artist.c.Name.is_not(None)))
            self._artists = [(int(r[0]), str(r[1])) for r in rows]
        return self._artists

    def genres(self) -> list[tuple[int, str]]:
        """Every genre (id, name); read once."""
        t = self.tables
        if self._genres is None:
            rows = self._rows(select(t.genre.c.GenreId, t.genre.c.Name).where(t.genre.c.Name.is_not(None)))
            self._genres = [(int(r[0]), str(r[1])) for r in rows]
        return self._genres

    @staticmethod
    def _match(name: str, known: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
        """Exact (folded) matches, else names containing ``name``, else names ``name`` contains."""
        wanted = fold(name)
        if not wanted:
            return []
        known = list(known)
        exact = [k for k in known if fold(k[1]) == wanted]
        if exact:
            return exact
        containing = [k for k in known if wanted in fold(k[1])]
        if containing:
            return sorted(containing, key=lambda k: len(k[1]))
        return [k for k in known if len(fold(k[1])) >= 3 and f" {fold(k[1])} " in f" {wanted} "]

    def find_artists(self, name: str) -> list[tuple[int, str]]:
        return self._match(name, self.artists())

    def find_genres(self, name: str) -> list[tuple[int, str]]:
        return self._match(name, self.genres())

    # -- catalogue --------------------------------------------------------------------------

    def albums_of(self, artist_ids: Sequence[int]) -> list[tuple[str, str, int]]:
        """(artist, album title, number of tracks) for the artists, by artist then title."""
        t = self.tables
        statement = (
            select(t.artist.c.Name, t.album.c.Title, func.count(t.track.c.TrackId))
            .join(t.album, t.album.c.ArtistId == t.artist.c.ArtistId)
            .outerjoin(t.track, t.track.c.AlbumId == t.album.c.AlbumId)
            .where(t.artist.c.ArtistId.in_(list(artist_ids)))
            .group_by(t.artist.c.Name, t.album.c.AlbumId, t.album.c.Title)
            .order_by(t.artist.c.Name, t.album.c.Title)
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in self._rows(statement)]

    def _track_query(self) -> tuple[Any, Any]:
        t = self.tables
        sales = (select(t.invoice_line.c.TrackId, func.count().label("sold"))
                 .group_by(t.invoice_line.c.TrackId).subquery())
        return (
            select(t.track.c.TrackId, t.track.c.Name, t.album.c.Title, t.artist.c.Name, t.genre.c.Name,
                   t.track.c.UnitPrice, t.track.c.Milliseconds, func.coalesce(sales.c.sold, 0).label("sold"))
            .select_from(t.track)
            .outerjoin(t.album, t.album.c.AlbumId == t.track.c.AlbumId)
            .outerjoin(t.artist, t.artist.c.ArtistId == t.album.c.ArtistId)
            .outerjoin(t.genre, t.genre.c.GenreId == t.track.c.GenreId)
            .outerjoin(sales, sales.c.TrackId == t.track.c.TrackId)
        ), sales

    def tracks(self, *, artist_ids: Sequence[int] = (), genre_ids: Sequence[int] = (),
               exclude_artist_ids: Sequence[int] = (), limit: int = 10) -> list[dict[str, Any]]:
        """Tracks by any of the artists and/or in any of the genres, best-selling first."""
        t = self.tables
        statement, sales = self._track_query()
        if artist_ids:
            statement = statement.where(t.album.c.ArtistId.in_(list(artist_ids)))
        if genre_ids:
            statement = statement.where(t.track.c.GenreId.in_(list(genre_ids)))
        if exclude_artist_ids:
            statement = statement.where(t.album.c.ArtistId.not_in(list(exclude_artist_ids)))
        statement = statement.order_by(desc(func.coalesce(sales.c.sold, 0)), t.track.c.Name,
                                       t.track.c.TrackId).limit(limit)
        return [self._track(r) for r in self._rows(statement)]

    def find_tracks(self, title: str, limit: int = 10) -> list[dict[str, Any]]:
        """Tracks named ``title`` (any case), else tracks whose name contains it."""
        t = self.tables
        title = " ".join(title.split())
        if not title:
            return []
        statement, _sales = self._track_query()
        name = func.lower(t.track.c.Name)
        exact = self._rows(statement.where(name == title.lower()).order_by(t.track.c.TrackId).limit(limit))
        if exact:
            return [self._track(r) for r in exact]
        pattern = "%" + title.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._rows(statement.where(name.like(pattern, escape="\\"))
                          .order_by(func.length(t.track.c.Name), t.track.c.TrackId).limit(limit))
        return [self._track(r) for r in rows]

    @staticmethod
    def _track(row: Any) -> dict[str, Any]:
        return {"id": int(row[0]), "name": str(row[1]), "album": row[2], "artist": row[3], "genre": row[4],
                "price": _money(row[5]), "length": _duration(row[6]), "sold": int(row[7])}

    # -- customers and invoices -------------------------------------------------------------

    def _customer(self, row: Any) -> Customer:
        return Customer(id=int(row[0]), first_name=str(row[1]), last_name=str(row[2]), email=str(row[3]),
                        phone=row[4], city=row[5], country=row[6],
                        support_rep_id=None if row[7] is None else int(row[7]))

    def find_customer(self, kind: IdentityKind, value: str) -> Customer | None:
        """The one customer with this id, email (any case) or phone (digits compared)."""
        t = self.tables
        c = t.customer.c
        base = select(c.CustomerId, c.FirstName, c.LastName, c.Email, c.Phone, c.City, c.Country, c.SupportRepId)
        if kind == "id":
            if not value.isdigit():
                return None
            rows = self._rows(base.where(c.CustomerId == int(value)))
        elif kind == "email":
            rows = self._rows(base.where(func.lower(c.Email) == value.strip().lower()))
        else:
            digits = phone_digits(value)
            if len(digits) < 7:
                return None
            # Phones are stored formatted ("+55 (12) 3923-5555"): compare digits, in Python; a
            # number given without its country or area code matches the end of the stored one.
            rows = [r for r in self._rows(base.where(c.Phone.is_not(None)))
                    if same_phone(digits, str(r[4]))]
        return self._customer(rows[0]) if len(rows) == 1 else None

    def invoices(self, customer_id: int, order: Literal["newest", "oldest", "total"] = "newest",
                 limit: int = 20) -> tuple[int, list[dict[str, Any]]]:
        """(how many invoices the customer has, the first ``limit`` in ``order``)."""
        t = self.tables
        i = t.invoice.c
        lines = (select(t.invoice_line.c.InvoiceId, func.sum(t.invoice_line.c.Quantity).label("item_count"))
                 .group_by(t.invoice_line.c.InvoiceId).subquery())
        ordering = {"newest": (desc(i.InvoiceDate), desc(i.InvoiceId)), "oldest": (i.InvoiceDate, i.InvoiceId),
                    "total": (desc(i.Total), desc(i.InvoiceDate))}[order]
        statement = (select(i.InvoiceId, i.InvoiceDate, i.Total, func.coalesce(lines.c.item_count, 0))
                     .outerjoin(lines, lines.c.InvoiceId == i.InvoiceId)
                     .where(i.CustomerId == customer_id).order_by(*ordering))
        rows = self._rows(statement)
        found = [{"invoice": int(r[0]), "date": _day(r[1]), "total": _money(r[2]), "items": int(r[3])} for r in rows]
        return len(found), found[:limit]

    def purchases_by_unit_price(self, customer_id: int, limit: int = 20) -> list[dict[str, Any]]:
        """The customer's purchased tracks, most expensive unit price first."""
        t = self.tables
        li, i = t.invoice_line.c, t.invoice.c
        statement = (
            select(li.InvoiceId, i.InvoiceDate, t.track.c.Name, t.artist.c.Name, li.UnitPrice, li.Quantity)
            .join(t.invoice, i.InvoiceId == li.InvoiceId)
            .join(t.track, t.track.c.TrackId == li.TrackId)
            .outerjoin(t.album, t.album.c.AlbumId == t.track.c.AlbumId)
            .outerjoin(t.artist, t.artist.c.ArtistId == t.album.c.ArtistId)
            .where(i.CustomerId == customer_id)
            .order_by(desc(li.UnitPrice), desc(i.InvoiceDate), li.InvoiceLineId)
            .limit(limit)
        )
        return [{"invoice": int(r[0]), "date": _day(r[1]), "track": r[2], "artist": r[3],
                 "unit_price": _money(r[4]), "quantity": int(r[5])} for r in self._rows(statement)]

    def invoice_of(self, customer_id: int, invoice_id: int) -> dict[str, Any] | None:
        """One of the customer's invoices with its lines and the employee who handled it; None
        when the invoice does not exist or belongs to someone else (the same answer for both)."""
        t = self.tables
        i, c, e = t.invoice.c, t.customer.c, t.employee.c
        head = self._rows(
            select(i.InvoiceId, i.InvoiceDate, i.Total, e.FirstName, e.LastName, e.Title, e.Email, e.Phone)
            .join(t.customer, c.CustomerId == i.CustomerId)
            .outerjoin(t.employee, e.EmployeeId == c.SupportRepId)
            .where(i.InvoiceId == invoice_id, i.CustomerId == customer_id)
        )
        if not head:
            return None
        r = head[0]
        li = t.invoice_line.c
        lines = self._rows(
            select(t.track.c.Name, t.artist.c.Name, li.UnitPrice, li.Quantity)
            .join(t.track, t.track.c.TrackId == li.TrackId)
            .outerjoin(t.album, t.album.c.AlbumId == t.track.c.AlbumId)
            .outerjoin(t.artist, t.artist.c.ArtistId == t.album.c.ArtistId)
            .where(li.InvoiceId == invoice_id)
            .order_by(li.InvoiceLineId)
        )
        employee = None if r[3] is None else {
            "name": f"{r[3]} {r[4]}", "title": r[5], "email": r[6], "phone": r[7]}
        return {"invoice": int(r[0]), "date": _day(r[1]), "total": _money(r[2]), "employee": employee,
                "lines": [{"track": x[0], "artist": x[1], "unit_price": _money(x[2]), "quantity": int(x[3])}
                          for x in lines]}
