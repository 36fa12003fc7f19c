"""A customer's musical taste: saved to their Chorus memory, used for recommendations.

The taste this plugin saves is one memory, written as a sentence a person can read in the
Memories panel ("Music taste: favourite artists AC/DC, Queen; favourite genres Jazz."), and
rewritten whole when it grows, so it never splits into near-copies. Visitors without a login have
no memory: their taste lasts for the conversation only (``ToolContext.state``).

The user's other memories count too, whoever saved them and however they are phrased ("My
favourite artist is Miles Davis", saved by the assistant): every artist of the catalog they name
is a favourite, and every genre they name in a sentence about liking music, unless the sentence
says the opposite ("I can't stand Queen").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from chorus import ToolContext
from chorus_music_store import _parse
from chorus_music_store._store import MusicStore

PREFIX = "Music taste:"
STATE_KEY = "music_store.taste"
_PART = re.compile(r"favourite (artists|genres) (.+?)(?:;|\.$|$)")
_SEP = " | "
KEEP = 8  # between names: artist names contain commas and "&"


_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+|,?\s+\bbut\b\s+", re.I)
_DISLIKE = re.compile(r"\b(?:hate|hates|dislike|dislikes|can'?t stand|cannot stand|not (?:a )?(?:big )?fan|"
                      r"(?:do|does|did)(?:n'?t| not) (?:like|love|enjoy)|never listen|tired of|sick of|allergic)\b",
                      re.I)
_LIKING = re.compile(r"\b(?:love|loves|like|likes|enjoy|enjoys|favou?rite|fan|into|listen|listens|adore|prefer|"
                     r"music|genre|taste)\b", re.I)


@dataclass
class Taste:
    artists: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """The user's other memories, in their own words: read against the catalog by :meth:`resolved`."""

    def merge(self, other: Taste) -> Taste:
        """Both tastes; the most recent :data:`KEEP` names of each kind (a memory is at most 500
        characters)."""
        return Taste(artists=_union(self.artists, other.artists)[-KEEP:],
                     genres=_union(self.genres, other.genres)[-KEEP:], notes=_union(self.notes, other.notes))

    def resolved(self, store: MusicStore) -> Taste:
        """This taste with what the notes say, in the catalog's own names (blocking: the store)."""
        found = Taste()
        for note in self.notes:
            for sentence in _SENTENCE.split(note):
                if not sentence.strip() or _DISLIKE.search(sentence):
                    continue
                found.artists = _union(found.artists, _parse.names_in(sentence, store.artists(), exact_case_below=6))
                if _LIKING.search(sentence):
                    found.genres = _union(found.genres, _parse.names_in(sentence, store.genres()))
        return Taste(artists=_union(self.artists, found.artists), genres=_union(self.genres, found.genres))

    def __bool__(self) -> bool:
        return bool(self.artists or self.genres)

    def sentence(self) -> str:
        parts = []
        if self.artists:
            parts.append("favourite artists " + _SEP.join(self.artists))
        if self.genres:
            parts.append("favourite genres " + _SEP.join(self.genres))
        return f"{PREFIX} " + "; ".join(parts) + "."

    @classmethod
    def parse(cls, text: str) -> Taste:
        taste = cls()
        body = text.removeprefix(PREFIX).strip()
        for kind, names in _PART.findall(body):
            items = [n.strip() for n in names.split(_SEP.strip()) if n.strip()]
            if kind == "artists":
                taste.artists = _union(taste.artists, items)
            else:
                taste.genres = _union(taste.genres, items)
        return taste


def _union(a: list[str], b: list[str]) -> list[str]:
    result = list(a)
    seen = {x.casefold() for x in a}
    for x in b:
        if x.casefold() not in seen:
            seen.add(x.casefold())
            result.append(x)
    return result


async def read(context: ToolContext) -> Taste:
    """What this customer likes: their saved memory, plus what they said in this conversation."""
    taste = Taste()
    if context.memory is not None:
        items = await context.memory.list()
        for item in items:
            if item.text.startswith(PREFIX):
                taste = taste.merge(Taste.parse(item.text))
            else:
                taste.notes.append(item.text)
    return taste.merge(_session_taste(context))


def _session_taste(context: ToolContext) -> Taste:
    """What the customer said they like in this conversation."""
    saved = context.state.get(STATE_KEY)
    if not isinstance(saved, dict):
        return Taste()
    return Taste(artists=[str(a) for a in saved.get("artists", [])], genres=[str(g) for g in saved.get("genres", [])])


def resolve(store: MusicStore, artists: list[str], genres: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The catalog's own spelling of the named artists and genres, and the names it lacks."""
    found_artists: list[str] = []
    found_genres: list[str] = []
    unknown: list[str] = []
    for names, find, found in ((artists, store.find_artists, found_artists),
                               (genres, store.find_genres, found_genres)):
        for name in names:
            match = find(name)
            if match:
                found.append(match[0][1])
            else:
                unknown.append(name)
    return _union([], found_artists), _union([], found_genres), unknown


async def save(context: ToolContext, artists: list[str], genres: list[str], unknown: list[str]) -> str:
    new = Taste(artists=artists, genres=genres)
    missing = f" I couldn't find {', '.join(f'“{u}”' for u in unknown)} in the catalog." if unknown else ""
    if not new:
        return "I didn't save anything: name an artist or genre the store carries." + missing
    merged = _session_taste(context).merge(new)
    context.state[STATE_KEY] = {"artists": merged.artists, "genres": merged.genres}  # plain data: kept with the chat
    said = ", ".join([*artists, *genres])
    if context.memory is None:
        return (f"Noted for this conversation: you like {said}. Sign in and I will remember it next time too."
                + missing)
    memory = context.memory
    whole = (await read(context)).merge(new)
    old = [item.id for item in await memory.list() if item.text.startswith(PREFIX)]
    await memory.remember(whole.sentence())
    for memory_id in old:
        await memory.forget(memory_id)
    return (f"Saved to your memory: you like {said}. I'll use it for recommendations, now and in later "
            "conversations (see or delete it with the Memories button)." + missing)


def recommend(store: MusicStore, *, genre: str, artist: str, taste: Taste, limit: int = 8) -> str:
    """Recommendations as Markdown: for a genre, like an artist, or from the customer's taste."""
    from chorus_music_store._catalog import _track_line

    if genre or artist:
        sections = []
        if artist:
            found = store.find_artists(artist)
            if not found:
                return f"I couldn't find an artist called “{artist}” in the store's catalog."
            tracks = store.tracks(artist_ids=[found[0][0]], limit=limit)
            sections.append((f"If you like **{found[0][1]}**, try these", tracks))
        if genre:
            genres = store.find_genres(genre)
            if not genres:
                known = ", ".join(g[1] for g in store.genres())
                return f"The store has no genre called “{genre}”. Its genres are: {known}."
            tracks = store.tracks(genre_ids=[g[0] for g in genres], limit=limit)
            sections.append((f"Some **{genres[0][1]}** tracks you might like", tracks))
        return "\n\n".join(f"{head}:\n" + "\n".join(_track_line(t) for t in tracks) for head, tracks in sections
                           if tracks) or "I have nothing to recommend for that yet."
    taste = taste.resolved(store)
    if not taste:
        tracks = store.tracks(limit=limit)
        return ("Here are the store's best sellers. Tell me your favourite artists or genres "
                "(for example “I love Jazz”) and I'll recommend for you:\n"
                + "\n".join(_track_line(t) for t in tracks))
    lists: list[str] = []
    artist_ids = [a[0] for name in taste.artists for a in store.find_artists(name)[:1]]
    if artist_ids:
        tracks = store.tracks(artist_ids=artist_ids, limit=limit)
        lists.append(f"Because you like **{', '.join(taste.artists)}**:\n" + "\n".join(map(_track_line, tracks)))
    genre_ids = [g[0] for name in taste.genres for g in store.find_genres(name)[:1]]
    if genre_ids:
        tracks = store.tracks(genre_ids=genre_ids, exclude_artist_ids=artist_ids, limit=limit)
        lists.append(f"Because you like **{', '.join(taste.genres)}**:\n" + "\n".join(map(_track_line, tracks)))
    return "\n\n".join(lists) or "I couldn't find your favourites in the catalog any more."
