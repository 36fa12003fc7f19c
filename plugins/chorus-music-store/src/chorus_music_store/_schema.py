"""The Chinook tables this plugin reads, as SQLAlchemy Core tables, in both spellings.

Chinook comes with CamelCase names (``"Artist"."ArtistId"``: the SQLite file, and most
copies) or, in newer PostgreSQL and MySQL scripts, snake_case ones (``artist.artist_id``).
:func:`tables` builds the same tables for either; code always uses the CamelCase keys
(``tables.artist.c.ArtistId``). Only the columns the tools use are declared. Every query is
built from these objects, so values always travel as bound parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Integer, MetaData, Numeric, String, Table


def snake(name: str) -> str:
    """``InvoiceLine`` -> ``invoice_line``, ``SupportRepId`` -> ``support_rep_id``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class ChinookTables:
    metadata: MetaData
    artist: Table
    album: Table
    genre: Table
    media_type: Table
    track: Table
    employee: Table
    customer: Table
    invoice: Table
    invoice_line: Table
    snake_case: bool


def tables(snake_case: bool = False) -> ChinookTables:
    """The Chinook tables named CamelCase (default) or snake_case."""
    metadata = MetaData()

    def name(camel: str) -> str:
        return snake(camel) if snake_case else camel

    def column(camel: str, kind: Any, *, fk: str | None = None, **kw: Any) -> Column[Any]:
        args: list[Any] = []
        if fk is not None:
            table, col = fk.split(".")
            args.append(ForeignKey(f"{name(table)}.{col}"))  # a foreign key names the column's key
        return Column(name(camel), kind, *args, key=camel, **kw)

    def table(camel: str, *columns: Column[Any]) -> Table:
        return Table(name(camel), metadata, *columns)

    return ChinookTables(
        metadata=metadata,
        artist=table("Artist", column("ArtistId", Integer, primary_key=True), column("Name", String(120))),
        album=table(
            "Album", column("AlbumId", Integer, primary_key=True), column("Title", String(160), nullable=False),
            column("ArtistId", Integer, fk="Artist.ArtistId", nullable=False)),
        genre=table("Genre", column("GenreId", Integer, primary_key=True), column("Name", String(120))),
        media_type=table("MediaType", column("MediaTypeId", Integer, primary_key=True), column("Name", String(120))),
        track=table(
            "Track", column("TrackId", Integer, primary_key=True), column("Name", String(200), nullable=False),
            column("AlbumId", Integer, fk="Album.AlbumId"),
            column("MediaTypeId", Integer, fk="MediaType.MediaTypeId", nullable=False),
            column("GenreId", Integer, fk="Genre.GenreId"), column("Composer", String(220)),
            column("Milliseconds", Integer, nullable=False), column("Bytes", Integer),
            column("UnitPrice", Numeric(10, 2), nullable=False)),
        employee=table(
            "Employee", column("EmployeeId", Integer, primary_key=True),
            column("LastName", String(20), nullable=False), column("FirstName", String(20), nullable=False),
            column("Title", String(30)), column("ReportsTo", Integer, fk="Employee.EmployeeId"),
            column("Phone", String(24)), column("Email", String(60))),
        customer=table(
            "Customer", column("CustomerId", Integer, primary_key=True),
            column("FirstName", String(40), nullable=False), column("LastName", String(20), nullable=False),
            column("Company", String(80)), column("City", String(40)), column("Country", String(40)),
            column("Phone", String(24)), column("Email", String(60), nullable=False),
            column("SupportRepId", Integer, fk="Employee.EmployeeId")),
        invoice=table(
            "Invoice", column("InvoiceId", Integer, primary_key=True),
            column("CustomerId", Integer, fk="Customer.CustomerId", nullable=False),
            column("InvoiceDate", DateTime, nullable=False), column("BillingCity", String(40)),
            column("BillingCountry", String(40)), column("Total", Numeric(10, 2), nullable=False)),
        invoice_line=table(
            "InvoiceLine", column("InvoiceLineId", Integer, primary_key=True),
            column("InvoiceId", Integer, fk="Invoice.InvoiceId", nullable=False),
            column("TrackId", Integer, fk="Track.TrackId", nullable=False),
            column("UnitPrice", Numeric(10, 2), nullable=False), column("Quantity", Integer, nullable=False)),
        snake_case=snake_case,
    )


CAMEL = tables(snake_case=False)
SNAKE = tables(snake_case=True)
