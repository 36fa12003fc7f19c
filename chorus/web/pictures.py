"""The picture of every turn in the page: folded under the answer (a "turn map" step with the
diagram as an SVG image and the same facts in words), and of the whole conversation from the
composer's **Map** button. Drawn by the server (:mod:`chorus.tracing.picture`): no script, no CDN.

Each turn's picture is kept in its step's metadata, so it comes back with the conversation after
a reload or a restart, and the Map button draws the conversation from what is stored (with history
on; without it, from this chat's turns so far).
"""

from __future__ import annotations

import logging

import chainlit as cl

from chorus.store.export import TURN_MAP_KEY, ThreadNotFound, turn_maps
from chorus.tracing.picture import TurnPicture, conversation_picture
from chorus.web.context import SYSTEM, current

log = logging.getLogger(__name__)

TURN_MAP = "turn map"
MAP_COMMAND = "Map"
_KEPT = "turn_maps"  # this chat's pictures, for the Map button when history is off


async def picture_step(picture: TurnPicture, turn_id: str, message_id: str | None = None) -> None:
    """The turn's picture, folded under its answer like the tokens and cost. ``message_id`` is the
    user's message it answers: an edit of that message replaces this picture and the later ones."""
    data = picture.to_dict()
    kept: list[tuple[str | None, dict[str, object]]] = cl.user_session.get(_KEPT) or []
    cl.user_session.set(_KEPT, current_branch([*kept, (message_id, data)]))
    image = cl.Image(name=f"turn-map-{turn_id[:8] or 'turn'}.svg", content=_drawing(picture.svg()),
                     mime="image/svg+xml", display="inline", size="large")
    step = cl.Step(name=TURN_MAP, type="undefined", elements=[image],
                   metadata={TURN_MAP_KEY: data, "turn_id": turn_id, "message_id": message_id})
    step.output = picture.summary()
    await step.send()


async def show_conversation_map() -> None:
    """The whole conversation's picture as a message (the user's own conversation only)."""
    maps: list[tuple[str | None, dict[str, object]]] = cl.user_session.get(_KEPT) or []
    web = current()
    if web.history:
        user = cl.user_session.get("user")
        try:
            maps = current_branch(await turn_maps(web.engine(), cl.context.session.thread_id,
                                                  owner=getattr(user, "identifier", None) or ""))
        except ThreadNotFound:
            maps = []
        except Exception as exc:  # the database is down: say so, keep serving
            log.error("could not read the turn maps of thread %s: %s", cl.context.session.thread_id, exc)
            await cl.ErrorMessage(content="The conversation's map could not be read from the database; try again "
                                          "in a moment.", author=SYSTEM).send()
            return
    pictures = [data for _, data in maps]
    if not pictures:
        await cl.Message(content="There is nothing to map yet: ask the team something first.", author=SYSTEM).send()
        return
    whole = conversation_picture([TurnPicture.from_dict(p) for p in pictures])
    turns = len(pictures)
    title = f"This conversation: {turns} turn{'s' if turns != 1 else ''}"
    image = cl.Image(name="conversation-map.svg", content=_drawing(whole.svg(title)), mime="image/svg+xml",
                     display="inline", size="large")
    await cl.Message(content=f"**{title}**\n\n{whole.summary()}", author=SYSTEM, elements=[image]).send()


def current_branch(maps: list[tuple[str | None, dict[str, object]]]) -> list[tuple[str | None, dict[str, object]]]:
    """The pictures of the conversation as it stands, from every picture drawn, oldest first: a
    picture for a message that has one already is an edit's, which replaced that turn and the later ones."""
    kept: list[tuple[str | None, dict[str, object]]] = []
    for message_id, data in maps:
        earlier = next((i for i, (m, _) in enumerate(kept) if message_id is not None and m == message_id), None)
        if earlier is not None:
            del kept[earlier:]
        kept.append((message_id, data))
    return kept


def _drawing(svg: str) -> bytes:
    """The SVG as the page gets it: signed as Chorus's own when files are kept (the file route then
    serves it as a picture, and no other SVG)."""
    files = current().files
    data = svg.encode("utf-8")
    return files.sign_drawing(data) if files is not None else data
