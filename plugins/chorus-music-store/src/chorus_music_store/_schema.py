"""The Chinook tables this plugin reads, as SQLAlchemy Core tables.

Only the columns the tools use are declared: any database with the Chinook schema (the
SQLite file, or the same tables in PostgreSQL or MySQL) has at least these. Every query is
built from these objects, so values always travel as bound parameters.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Integer, MetaData, Numeric, String, Table

metadata = MetaData()

artist = Table(
    "Artist", metadata,
    Column("ArtistId", Integer, primary_key=True),
    Column("Name", String(120)),
)
album = Table(
    "Album", metadata,
    Column("AlbumId", Integer, primary_key=True),
    Column("Title", String(160), nullable=False),
    Column("ArtistId", Integer, ForeignKey("Artist.ArtistId"), nullable=False),
)
genre = Table(
    "Genre", metadata,
    Column("GenreId", Integer, primary_key=True),
    Column("Name", String(120)),
)
media_type = Table(
    "MediaType", metadata,
    Column("MediaTypeId", Integer, primary_key=True),
    Column("Name", String(120)),
)
track = Table(
    "Track", metadata,
    Column("TrackId", Integer, primary_key=True),
    Column("Name", String(200), nullable=False),
    Column("AlbumId", Integer, ForeignKey("Album.AlbumId")),
    Column("MediaTypeId", Integer, ForeignKey("MediaType.MediaTypeId"), nullable=False),
    Column("GenreId", Integer, ForeignKey("Genre.GenreId")),
    Column("Composer", String(220)),
    Column("Milliseconds", Integer, nullable=False),
    Column("Bytes", Integer),
    Column("UnitPrice", Numeric(10, 2), nullable=False),
)
employee = Table(
    "Employee", metadata,
    Column("EmployeeId", Integer, primary_key=True),
    Column("LastName", String(20), nullable=False),
    Column("FirstName", String(20), nullable=False),
    Column("Title", String(30)),
    Column("ReportsTo", Integer, ForeignKey("Employee.EmployeeId")),
    Column("Phone", String(24)),
    Column("Email", String(60)),
)
customer = Table(
    "Customer", metadata,
    Column("CustomerId", Integer, primary_key=True),
    Column("FirstName", String(40), nullable=False),
    Column("LastName", String(20), nullable=False),
    Column("Company", String(80)),
    Column("City", String(40)),
    Column("Country", String(40)),
    Column("Phone", String(24)),
    Column("Email", String(60), nullable=False),
    Column("SupportRepId", Integer, ForeignKey("Employee.EmployeeId")),
)
invoice = Table(
    "Invoice", metadata,
    Column("InvoiceId", Integer, primary_key=True),
    Column("CustomerId", Integer, ForeignKey("Customer.CustomerId"), nullable=False),
    Column("InvoiceDate", DateTime, nullable=False),
    Column("BillingCity", String(40)),
    Column("BillingCountry", String(40)),
    Column("Total", Numeric(10, 2), nullable=False),
)
invoice_line = Table(
    "InvoiceLine", metadata,
    Column("InvoiceLineId", Integer, primary_key=True),
    Column("InvoiceId", Integer, ForeignKey("Invoice.InvoiceId"), nullable=False),
    Column("TrackId", Integer, ForeignKey("Track.TrackId"), nullable=False),
    Column("UnitPrice", Numeric(10, 2), nullable=False),
    Column("Quantity", Integer, nullable=False),
)
