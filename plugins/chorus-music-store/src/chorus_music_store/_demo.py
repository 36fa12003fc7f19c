"""The demo store: a small database with the Chinook schema, written by this code.

Used when no ``CHORUS_MUSIC_STORE_URL`` is set, so the Music store team works on a fresh
machine. The catalogue is a handful of well-known albums (public facts, typed here); the
customers, employees and invoices are invented, generated from a fixed seed so every
machine gets the same store (customer 1 is always Ana Souza, ``ana.souza@example.com``).
"""

from __future__ import annotations

import os
import random
import tempfile
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert

from chorus_music_store._schema import CAMEL as t

DEMO_VERSION = 2
"""Bump when the generated data changes: a new file is written next to the old one."""

# artist, genre, [(album, [tracks])]
CATALOGUE: list[tuple[str, str, list[tuple[str, list[str]]]]] = [
    ("AC/DC", "Rock", [
        ("For Those About To Rock We Salute You", [
            "For Those About To Rock (We Salute You)", "Put The Finger On You", "Let's Get It Up",
            "Inject The Venom", "Snowballed", "Evil Walks", "C.O.D.", "Breaking The Rules"]),
        ("Let There Be Rock", [
            "Go Down", "Dog Eat Dog", "Let There Be Rock", "Bad Boy Boogie", "Problem Child",
            "Overdose", "Hell Ain't A Bad Place To Be", "Whole Lotta Rosie"]),
    ]),
    ("Led Zeppelin", "Rock", [
        ("IV", ["Black Dog", "Rock and Roll", "The Battle of Evermore", "Stairway to Heaven",
                "Misty Mountain Hop", "Four Sticks", "Going to California", "When the Levee Breaks"]),
        ("Physical Graffiti", ["Custard Pie", "The Rover", "In My Time of Dying", "Kashmir", "Trampled Under Foot"]),
    ]),
    ("Queen", "Rock", [
        ("A Night at the Opera", ["Death on Two Legs", "Lazing on a Sunday Afternoon", "I'm in Love with My Car",
                                  "You're My Best Friend", "Love of My Life", "Bohemian Rhapsody"]),
        ("News of the World", ["We Will Rock You", "We Are the Champions", "Spread Your Wings", "It's Late"]),
    ]),
    ("Metallica", "Metal", [
        ("Master of Puppets", ["Battery", "Master of Puppets", "The Thing That Should Not Be",
                               "Welcome Home (Sanitarium)", "Orion"]),
    ]),
    ("Nirvana", "Alternative & Punk", [
        ("Nevermind", ["Smells Like Teen Spirit", "In Bloom", "Come as You Are", "Breed", "Lithium", "Polly"]),
    ]),
    ("Miles Davis", "Jazz", [
        ("Kind of Blue", ["So What", "Freddie Freeloader", "Blue in Green", "All Blues", "Flamenco Sketches"]),
    ]),
    ("John Coltrane", "Jazz", [
        ("Blue Train", ["Blue Train", "Moment's Notice", "Locomotion", "I'm Old Fashioned", "Lazy Bird"]),
    ]),
    ("The Dave Brubeck Quartet", "Jazz", [
        ("Time Out", ["Blue Rondo à la Turk", "Strange Meadow Lark", "Take Five", "Three to Get Ready",
                      "Kathy's Waltz"]),
    ]),
    ("Antônio Carlos Jobim", "Bossa Nova", [
        ("Wave", ["Wave", "The Red Blouse", "Look to the Sky", "Triste", "Mojave"]),
    ]),
    ("Bob Marley & The Wailers", "Reggae", [
        ("Exodus", ["Natural Mystic", "Exodus", "Jamming", "Waiting in Vain", "Three Little Birds"]),
    ]),
    ("B.B. King", "Blues", [
        ("Live at the Regal", ["Every Day I Have the Blues", "Sweet Little Angel", "It's My Own Fault",
                               "How Blue Can You Get?", "Worry, Worry"]),
    ]),
    ("Johann Sebastian Bach", "Classical", [
        ("Cello Suites", ["Cello Suite No. 1 in G Major: Prélude", "Cello Suite No. 1 in G Major: Allemande",
                          "Cello Suite No. 2 in D Minor: Prélude"]),
    ]),
]

_FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Giulia", "Hiro", "Ines", "Jonas", "Kaveh", "Lena",
          "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tamar"]
_LAST = ["Souza", "Okafor", "Laurent", "Ivanov", "Mensah", "Haddad", "Rossi", "Tanaka", "Ferreira", "Berg",
         "Rahimi", "Novak", "García", "Karimi", "Lund", "Iyer", "Martin", "Silva", "Dahl", "Levi"]
_CITIES = [("São Paulo", "Brazil"), ("Lagos", "Nigeria"), ("Lyon", "France"), ("Kazan", "Russia"), ("Accra", "Ghana"),
           ("Beirut", "Lebanon"), ("Turin", "Italy"), ("Osaka", "Japan"), ("Porto", "Portugal"), ("Bergen", "Norway")]
_ASCII = str.maketrans("éóáíúãôç", "eoaiuaoc")


def demo_path(home: Path) -> Path:
    return home / "music-store" / f"demo-v{DEMO_VERSION}.sqlite"


def ensure_demo_store(home: Path) -> Path:
    """The demo store's file under ``home`` (Chorus's data directory), written if missing.

    Written to a temporary file and renamed, so a crash or a second process never leaves a
    half-written store behind.
    """
    path = demo_path(home)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".demo-", suffix=".sqlite", dir=path.parent)
    os.close(fd)
    try:
        write_demo_store(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_demo_store(path: Path) -> None:
    """Write the demo data into a new SQLite file at ``path``."""
    engine = create_engine(f"sqlite:///{path}")
    rng = random.Random(20261122)
    try:
        t.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(t.media_type), [{"MediaTypeId": 1, "Name": "MPEG audio file"}])
            genres: dict[str, int] = {}
            tracks: list[dict[str, Any]] = []
            artists: list[dict[str, Any]] = []
            albums: list[dict[str, Any]] = []
            for artist_id, (name, genre_name, records) in enumerate(CATALOGUE, start=1):
                artists.append({"ArtistId": artist_id, "Name": name})
                genre_id = genres.setdefault(genre_name, len(genres) + 1)
                for title, songs in records:
                    album_id = len(albums) + 1
                    albums.append({"AlbumId": album_id, "Title": title, "ArtistId": artist_id})
                    for song in songs:
                        ms = rng.randint(150_000, 390_000)
                        tracks.append({"TrackId": len(tracks) + 1, "Name": song, "AlbumId": album_id,
                                       "MediaTypeId": 1, "GenreId": genre_id, "Composer": None, "Milliseconds": ms,
                                       "Bytes": ms * 32, "UnitPrice": Decimal("0.99")})
            conn.execute(insert(t.genre), [{"GenreId": i, "Name": n} for n, i in genres.items()])
            conn.execute(insert(t.artist), artists)
            conn.execute(insert(t.album), albums)
            conn.execute(insert(t.track), tracks)
            conn.execute(insert(t.employee), [
                {"EmployeeId": 1, "FirstName": "Maya", "LastName": "Brooks", "Title": "Support Manager",
                 "ReportsTo": None, "Phone": "+1 555 0100", "Email": "maya@demo-music-store.example"},
                {"EmployeeId": 2, "FirstName": "Jun", "LastName": "Park", "Title": "Sales Support Agent",
                 "ReportsTo": 1, "Phone": "+1 555 0110", "Email": "jun@demo-music-store.example"},
                {"EmployeeId": 3, "FirstName": "Elif", "LastName": "Yilmaz", "Title": "Sales Support Agent",
                 "ReportsTo": 1, "Phone": "+1 555 0120", "Email": "elif@demo-music-store.example"},
            ])
            customers: list[dict[str, Any]] = []
            invoices: list[dict[str, Any]] = []
            lines: list[dict[str, Any]] = []
            start = datetime(2023, 1, 2)
            for customer_id, (first, last) in enumerate(zip(_FIRST, _LAST, strict=True), start=1):
                city, country = _CITIES[(customer_id - 1) % len(_CITIES)]
                customers.append({
                    "CustomerId": customer_id, "FirstName": first, "LastName": last, "Company": None,
                    "City": city, "Country": country, "Phone": f"+1 555 01{customer_id:02d}-{rng.randint(1000, 9999)}",
                    "Email": f"{first}.{last}@example.com".lower().translate(_ASCII),
                    "SupportRepId": 2 + customer_id % 2,
                })
                when = start + timedelta(days=rng.randint(0, 60))
                for _ in range(rng.randint(3, 6)):
                    invoice_id = len(invoices) + 1
                    chosen = rng.sample(tracks, rng.randint(1, 5))
                    for item in chosen:
                        price = Decimal("1.99") if rng.random() < 0.2 else Decimal("0.99")
                        lines.append({"InvoiceLineId": len(lines) + 1, "InvoiceId": invoice_id,
                                      "TrackId": item["TrackId"], "UnitPrice": price, "Quantity": 1})
                    total = sum((line["UnitPrice"] for line in lines if line["InvoiceId"] == invoice_id), Decimal(0))
                    invoices.append({"InvoiceId": invoice_id, "CustomerId": customer_id, "InvoiceDate": when,
                                     "BillingCity": city, "BillingCountry": country, "Total": total})
                    when += timedelta(days=rng.randint(40, 200))
            conn.execute(insert(t.customer), customers)
            conn.execute(insert(t.invoice), invoices)
            conn.execute(insert(t.invoice_line), lines)
    finally:
        engine.dispose()
