"""The catalog agent's tools: albums, tracks, genres, songs and recommendations.

Each tool returns Markdown a user can read as it is (the offline model shows tool results
verbatim; a real model rephrases them). Store calls block, so they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from typing import Any

from chorus import ToolContext, ToolSpec
from chorus_music_store import _parse, _taste
from chorus_music_store._store import MusicStore, StoreError

StoreGetter = Callable[[], MusicStore]
MAX_LIMIT = 25


def _track_line(track: Mapping[str, Any], *, artist: bool = True) -> str:
    by = f" by {track['artist']}" if artist and track.get("artist") else ""
    album = f", on *{track['album']}*" if track.get("album") else ""
    genre = f"{track['genre']}, " if track.get("genre") else ""
    return f"- **{track['name']}**{by}{album} ({genre}{track['length']}, {track['price']})"


def _clamp(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def unavailable(exc: StoreError) -> str:
    return f"Sorry, the music store is unavailable right now: {exc}. Please try again later."


def catalog_tools(get_store: StoreGetter) -> list[ToolSpec]:
    """The catalog tools over the store ``get_store`` returns (opened on first use)."""

    async def run(call: Callable[[MusicStore], str]) -> str:
        try:
            return await asyncio.to_thread(lambda: call(get_store()))
        except StoreError as exc:
            return unavailable(exc)

    def vocabulary_safe(read: Callable[[MusicStore], Any]) -> Any:
        try:
            return read(get_store())
        except StoreError:
            return []

    # -- albums --------------------------------------------------------------------------

    async def albums_by_artist(artist: str) -> str:
        """List the albums the store has by an artist or band (give the artist's name)."""
        def query(store: MusicStore) -> str:
            found = store.find_artists(artist)
            if not found:
                return f"I couldn't find an artist called “{artist}” in the store's catalog."
            rows = store.albums_of([a[0] for a in found[:5]])
            if not rows:
                return f"We have no albums by {', '.join(a[1] for a in found[:5])} at the moment."
            parts = []
            for _id, name in found[:5]:
                albums = [r for r in rows if r[0] == name]
                if albums:
                    noun = "album" if len(albums) == 1 else "albums"
                    lines = "\n".join(f"- *{title}* ({count} tracks)" for _a, title, count in albums)
                    parts.append(f"**{name}** has {len(albums)} {noun} in the store:\n{lines}")
            return "\n\n".join(parts)
        return await run(query)

    def albums_args(text: str) -> Mapping[str, Any] | None:
        """Albums when the message says albums ("queen albums", "what has Bob Marley released"), or
        asks what the store has by an artist without saying songs ("got anything by Led Zeppelin?",
        or just "Led Zeppelin?")."""
        if _parse.states_taste(text) or _RECOMMEND.search(text):
            return None
        if _ALBUM_WORDS.search(text):
            artist = _artist_in(text)
            return {"artist": artist} if artist else None
        if _SONG_WORDS.search(text):
            return None  # tracks_by_artist
        named = vocabulary_safe(lambda s: _parse.artists_in(text, s.artists()))
        if named and (_OVERVIEW.search(text) or vocabulary_safe(lambda s: _parse.whole_name(text, s.artists()))):
            return {"artist": str(named[0])}
        asked = _parse.artist_phrase(text) if _OVERVIEW.search(text) else None
        return {"artist": asked} if asked else None  # "anything by Pink Floyd?": the tool says if it has any

    def _artist_in(text: str) -> str | None:
        names = vocabulary_safe(lambda s: _parse.artists_in(text, s.artists()))
        if names:
            return str(names[0])
        return _parse.artist_phrase(text)

    # -- tracks by artist ----------------------------------------------------------------

    async def tracks_by_artist(artist: str, limit: int = 10) -> str:
        """List tracks by an artist or band, best-selling first."""
        def query(store: MusicStore) -> str:
            found = store.find_artists(artist)
            if not found:
                return f"I couldn't find an artist called “{artist}” in the store's catalog."
            tracks = store.tracks(artist_ids=[a[0] for a in found[:5]], limit=_clamp(limit))
            if not tracks:
                return f"We have no tracks by {found[0][1]} at the moment."
            names = ", ".join(a[1] for a in found[:5])
            return f"Tracks by **{names}**, best-selling first:\n" + "\n".join(_track_line(t) for t in tracks)
        return await run(query)

    def tracks_by_artist_args(text: str) -> Mapping[str, Any] | None:
        if _parse.states_taste(text) or _RECOMMEND.search(text) or not _SONG_WORDS.search(text):
            return None
        artist = _artist_in(text)
        return {"artist": artist} if artist else None

    # -- tracks by genre -----------------------------------------------------------------

    async def tracks_by_genre(genre: str, limit: int = 10) -> str:
        """List tracks of a music genre (Rock, Jazz, Metal, Blues, ...), best-selling first."""
        def query(store: MusicStore) -> str:
            found = store.find_genres(genre)
            if not found:
                known = ", ".join(g[1] for g in store.genres())
                return f"The store has no genre called “{genre}”. Its genres are: {known}."
            tracks = store.tracks(genre_ids=[g[0] for g in found], limit=_clamp(limit))
            names = ", ".join(g[1] for g in found)
            if not tracks:
                return f"There are no {names} tracks in the store at the moment."
            return f"**{names}** tracks, best-selling first:\n" + "\n".join(_track_line(t) for t in tracks)
        return await run(query)

    def genre_args(text: str) -> Mapping[str, Any] | None:
        """A genre the message names, unless it says the user likes it or names an artist too."""
        if _parse.states_taste(text):
            return None
        genres = vocabulary_safe(lambda s: _parse.names_near(text, s.genres()))
        if not genres or vocabulary_safe(lambda s: _parse.names_in(text, s.artists(), exact_case_below=6)):
            return None
        title = _parse.song_title(text)
        if known_title(text) or (title and known_title(title) and not _SONG_WORDS.search(text)):
            return None  # "we will rock you", "do you have We Will Rock You": a song, not the genre
        return {"genre": genres[0]}

    # -- does a song exist ----------------------------------------------------------------

    async def find_song(title: str) -> str:
        """Check whether the store sells a song (track) with this title; shows its artist and album."""
        def query(store: MusicStore) -> str:
            tracks = store.find_tracks(title)
            if not tracks:
                return f"No, the store has no song called “{title}”."
            exact = [t for t in tracks if t["name"].casefold() == title.strip().casefold()]
            shown = exact or tracks
            lead = (f"Yes, we have **{exact[0]['name']}**" if exact
                    else f"We have no song called exactly “{title}”, but these titles are close")
            return lead + ":\n" + "\n".join(_track_line(t) for t in shown)
        return await run(query)

    def song_args(text: str) -> Mapping[str, Any] | None:
        """A song title the message asks about, or a message that is just a title the store has."""
        title = _parse.song_title(text)
        if title:
            exact = known_title(title)
            if exact is None and (re.match(r"(?:a|an)\s", title, re.I) or vocabulary_safe(
                    lambda s: _parse.names_near(title, s.genres()) or _parse.artists_in(title, s.artists()))):
                return None  # "do you have any bossa nova": a genre or an artist, not a song
            return {"title": exact or title}
        whole = known_title(text)
        return {"title": whole} if whole and len(text.split()) <= 8 else None

    titles: dict[str, str] = {}

    def known_title(text: str) -> str | None:
        """The store's track whose whole name ``text`` is, if one is, or with a slip of the fingers
        when the title is long enough to tell ("bohemian rapsody"). Every title is read once."""
        if not titles:
            rows = vocabulary_safe(lambda s: s.tracks(limit=1_000_000))
            titles.update({_parse.folded_name(str(r["name"])): str(r["name"]) for r in rows})
        said = _parse.folded_name(text)
        if said in titles or len(said) < 8:
            return titles.get(said)
        near = [title for key, title in titles.items() if len(key) >= 8 and _parse.slip(said, key)]
        return near[0] if len(near) == 1 else None

    # -- recommendations and taste --------------------------------------------------------

    async def recommend_tracks(context: ToolContext, genre: str = "", artist: str = "") -> str:
        """Recommend tracks: of a genre, like an artist, or (with neither) from the customer's saved
        favourite artists and genres."""
        taste = await _taste.read(context) if not (genre or artist) else _taste.Taste()

        def query(store: MusicStore) -> str:
            return _taste.recommend(store, genre=genre, artist=artist, taste=taste)
        return await run(query)

    def recommend_args(text: str) -> Mapping[str, Any] | None:
        if not _RECOMMEND.search(text):
            return None
        args: dict[str, Any] = {}
        genres = vocabulary_safe(lambda s: _parse.names_near(text, s.genres()))
        if genres:
            args["genre"] = genres[0]
        artist = vocabulary_safe(lambda s: _parse.artists_in(text, s.artists()))
        if artist:
            args["artist"] = artist[0]
        return args

    async def remember_music_taste(context: ToolContext, artists: list[str] | None = None,
                                   genres: list[str] | None = None) -> str:
        """Save the customer's favourite artists and/or genres (as they named them) so later
        recommendations, in this and future conversations, use them."""
        def resolve(store: MusicStore) -> tuple[list[str], list[str], list[str]]:
            return _taste.resolve(store, artists or [], genres or [])
        try:
            found_artists, found_genres, unknown = await asyncio.to_thread(lambda: resolve(get_store()))
        except StoreError as exc:
            return unavailable(exc)
        return await _taste.save(context, found_artists, found_genres, unknown)

    def taste_args(text: str) -> Mapping[str, Any] | None:
        if not _parse.states_taste(text):
            return None
        artists = vocabulary_safe(lambda s: _parse.artists_in(text, s.artists()))
        genres = vocabulary_safe(lambda s: _parse.names_near(text, s.genres()))
        if not (artists or genres):
            return None
        return {"artists": artists, "genres": genres}

    return [
        ToolSpec(albums_by_artist, keywords=("album", "albums", "discography", "records by", "lp", "released",
                                             "anything by"),
                 offline_args=albums_args,
                 examples=("What albums does AC/DC have?", "Got anything by Led Zeppelin?", "Queen albums")),
        ToolSpec(tracks_by_artist, keywords=("songs by", "tracks by", "music by", "songs from", "tracks from"),
                 offline_args=tracks_by_artist_args,
                 examples=("Which songs by Queen do you have?", "List some Bob Marley songs")),
        ToolSpec(tracks_by_genre, keywords=("genre", "tracks in", "songs in", "music in"),
                 offline_args=genre_args, examples=("Show me some Blues tracks", "What reggae do you have?")),
        ToolSpec(find_song, keywords=("the song", "a song", "song called", "track called", "do you have",
                                      "do you sell", "is there", "looking for", "in stock", "can i buy"),
                 offline_args=song_args,
                 examples=("Do you have the song Black Dog?", "Is Stairway to Heaven in the store?")),
        ToolSpec(recommend_tracks, keywords=("recommend", "recommendation", "suggest", "what should i listen",
                                             "something like", "similar to", "new music"),
                 offline_args=recommend_args,
                 examples=("Recommend some Jazz tracks", "What should I listen to?", "Suggest something like Queen")),
        ToolSpec(remember_music_taste, keywords=("i love", "i like", "i enjoy", "my favourite", "my favorite",
                                                 "i'm into", "fan of"),
                 offline_args=taste_args, examples=("I love AC/DC and Jazz", "I'm really into bossa nova")),
    ]


# What the catalog's parsers listen for: kinds of request, in the words people use.
_ALBUM_WORDS = re.compile(r"\b(?:albums?|records?|discography|lps?|eps?|releases?|released|put out|"
                          r"come out with|made any)\b", re.I)
_SONG_WORDS = re.compile(r"\b(?:songs?|tracks?|tunes?|music|hits?|singles?)\b", re.I)
_OVERVIEW = re.compile(r"\b(?:anything|something|stuff|what (?:do|have) you (?:got|have)|have you got|"
                       r"do you (?:have|carry|stock|sell)|what(?:'s| is) there|tell me about|info on|"
                       r"information on|what about|know about)\b", re.I)
_RECOMMEND = re.compile(
    r"\b(?:recommend\w*|suggest\w*|what should i (?:listen|play|hear|try)|what to (?:listen|play|hear)|"
    r"something (?:like|similar|new|good)|similar to|new music|ideas?|in the mood for|discover|"
    r"what else (?:would|might) i like|tips?|best[- ]?sell\w*|most popular|popular)\b", re.I)
