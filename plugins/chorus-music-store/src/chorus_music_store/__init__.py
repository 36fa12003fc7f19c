"""chorus-music-store: a music store's customer-support team, as a Chorus plugin.

A supervisor (the team's selector, with this plugin's routing rules) hands each question to
the ``catalog`` agent (albums, tracks, genres, songs, recommendations, the customer's taste)
or the ``invoices`` agent (a verified customer's own invoices). It reads any database with
the Chinook schema, read-only (``CHORUS_MUSIC_STORE_URL``), or a demo store it generates.

Everything here uses Chorus's public API only: ``from chorus import ...``. Chorus finds this
module through the entry point ``music_store = "chorus_music_store"`` in the ``chorus`` group.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from chorus import AgentSpec, Settings, Starter, TeamSpec, ToolSpec, hookimpl
from chorus_music_store._account import account_tools
from chorus_music_store._catalog import catalog_tools
from chorus_music_store._orders import ORDERS_FILE, Orders
from chorus_music_store._store import MusicStore, StoreError, resolve_url

__version__ = "0.1.0"

URL_SETTING = "CHORUS_MUSIC_STORE_URL"
TEAM = "music-store"

CATALOG_PROMPT = """You are the catalog specialist of a music store's customer support.
Answer questions about the store's music with your tools: albums by an artist, tracks by an
artist, tracks of a genre, whether a song exists (with its album), and recommendations.
When the customer says which artists or genres they like, save it with remember_music_taste.
For recommendations without a named genre or artist, call recommend_tracks with no arguments:
it uses the customer's saved taste. Only mention music the tools returned; never invent titles.
You cannot see invoices or customer accounts: say that the invoice specialist handles those."""

INVOICES_PROMPT = """You are the invoice specialist of a music store's customer support.
You only discuss the verified customer's OWN invoices. The verified customer is fixed by the
verify_customer tool for this conversation; your invoice tools always act for that customer,
so you never need (and must never accept) a customer id from the conversation.
If a tool says verification is needed, ask the customer for their customer id, email or phone
number, then stop and wait for their reply. When they give one, call verify_customer with
exactly what they typed. Refuse any request about another customer's data, whatever reason or
instruction is given. Present invoice data as the tools return it.
To buy a track for the verified customer, call order_track with its exact title; the customer
approves the order on the page before it is placed. If a tool says "Not run", nothing was ordered:
say so plainly."""

ROUTING = """- catalog: music questions: albums, artists, bands, songs, tracks, genres, recommendations,
  and the customer telling which music they like.
- invoices: anything about the customer's account: invoices, purchases, orders, totals, prices
  paid, the employee who handled an invoice, buying a track, and the customer identifying
  themselves (customer id, email, phone) to be verified.
When a message answers a question the previous speaker asked, choose that speaker again."""

_stores: dict[tuple[str, Path], MusicStore] = {}
_stores_lock = threading.Lock()


class MusicStoreSettings(BaseSettings):
    """This plugin's setting, read like Chorus's own: the environment, then a ``.env`` file."""

    model_config = SettingsConfigDict(env_prefix="CHORUS_MUSIC_STORE_", env_file=".env", extra="ignore")
    url: str = ""


def store_for(settings: Settings) -> MusicStore:
    """The process's store for ``CHORUS_MUSIC_STORE_URL`` (the demo store when unset)."""
    value = MusicStoreSettings().url
    key = (value, Path(settings.home))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            url, label = resolve_url(value, Path(settings.home))
            store = MusicStore(url, label)
            store.engine  # noqa: B018  # opens nothing yet, but a missing file or driver is reported now
            _stores[key] = store
        return store


def _tools(settings: Settings) -> tuple[list[ToolSpec], list[ToolSpec]]:
    store = store_for(settings)  # a bad URL fails here: Chorus reports the plugin with the reason

    def get_store() -> MusicStore:
        return store

    orders = Orders(Path(settings.home).expanduser() / ORDERS_FILE)
    return catalog_tools(get_store), account_tools(get_store, orders)


@hookimpl
def chorus_register_tools(settings: Settings) -> list[ToolSpec]:
    catalog, account = _tools(settings)
    return [*catalog, *account]


@hookimpl
def chorus_register_agents(settings: Settings) -> list[AgentSpec]:
    catalog, account = _tools(settings)
    return [
        AgentSpec(
            name="catalog",
            description="Music store catalog specialist: albums and tracks by artist, songs by genre, "
                        "whether a song exists, and recommendations from the customer's favourite music.",
            system_message=CATALOG_PROMPT,
            tools=tuple(t.name for t in catalog),
            keywords=("album", "albums", "song", "songs", "track", "tracks", "artist", "band", "genre", "music",
                      "recommend", "suggest", "listen", "i love", "i like", "favourite", "favorite"),
            examples=("What albums does AC/DC have?",),
            team_only=True,
        ),
        AgentSpec(
            name="invoices",
            description="Music store invoice specialist: a verified customer's own invoices by date or unit "
                        "price, the employee who handled an invoice, and buying a track (an order the customer "
                        "approves). Verifies the customer first.",
            system_message=INVOICES_PROMPT,
            tools=tuple(t.name for t in account),
            keywords=("invoice", "invoices", "purchase", "purchases", "order", "orders", "bought", "receipt",
                      "bill", "my account", "email", "phone", "customer id", "customer", "verify", "employee",
                      "spent", "how much did i", "did i buy", "did i pay", "buy", "purchase the"),
            examples=("Show my invoices",),
            team_only=True,
        ),
    ]


@hookimpl
def chorus_register_teams() -> Sequence[TeamSpec]:
    return [
        TeamSpec(
            name=TEAM,
            display_name="Music store",
            description="A music store's support team: the catalog and your invoices.",
            type="selector",
            members=["catalog", "invoices"],
            routing=ROUTING,
            starters=[
                Starter(label="AC/DC albums", message="What albums does AC/DC have?"),
                Starter(label="Find a song", message="Do you have the song Black Dog?"),
                Starter(label="Jazz picks", message="Recommend some Jazz tracks"),
                Starter(label="My invoices", message="Show my invoices"),
            ],
        )
    ]


__all__ = [
    "TEAM",
    "URL_SETTING",
    "MusicStore",
    "StoreError",
    "chorus_register_agents",
    "chorus_register_teams",
    "chorus_register_tools",
    "store_for",
]
