"""The API's routes on the server (README, "API"): ``/v1/models`` and ``/v1/chat/completions``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chorus import metrics
from chorus.events import TurnEvent
from chorus.service import ConversationError
from chorus.store.caller import NotYours
from chorus.turn import ChatSession
from chorus.web.api import runs
from chorus.web.api.chat import MODEL_PREFIX, answer, parse_request
from chorus.web.api.errors import ApiError
from chorus.web.api.state import api
from chorus.web.context import WebApp, current

log = logging.getLogger("chorus.api")


def install(app: Starlette) -> None:
    """Put the API's routes ahead of Chainlit's catch-all (each counted in the metrics)."""
    for route in (Route("/v1/models", models, methods=["GET"]),
                  Route("/v1/chat/completions", chat_completions, methods=["POST"]), *runs.ROUTES):
        assert isinstance(route, Route)
        app.router.routes.insert(0, Route(route.path, _counted(route.path, route.endpoint),
                                          methods=sorted(route.methods or ["GET"])))


def _counted(path: str, endpoint: Any) -> Any:
    async def counted(request: Request) -> Response:
        response: Response = await endpoint(request)
        metrics.API_REQUESTS.labels(f"{request.method} {path}", str(response.status_code)).inc()
        return response

    return counted


async def models(request: Request) -> Response:
    web = current()
    try:
        key = await api(web).access.key(request)
    except ApiError as exc:
        return exc.response()
    data = [{"id": MODEL_PREFIX + spec.name, "object": "model", "created": 0, "owned_by": "chorus",
             "name": spec.title, "description": spec.description or ""}
            for spec in web.chorus.catalog.teams.values() if key.allows(spec.name)]
    return JSONResponse({"object": "list", "data": data})


async def chat_completions(request: Request) -> Response:
    web = current()
    service = api(web)
    try:
        key = await service.access.key(request)
        body = await service.access.body(request)
        settings = web.chorus.settings
        chat = parse_request(body, request.headers, settings.max_message_chars, settings.api_agent_names == "prefix")
        if web.draining is not None:
            raise ApiError(503, "The server is restarting: try again in a moment.", code="server_restarting",
                           headers={"Retry-After": "5"})
        spec = web.chorus.catalog.teams.get(chat.team)
        if spec is None:  # a title works too, as in `chorus ask --team`
            spec = next((t for t in web.chorus.catalog.teams.values() if t.title.lower() == chat.team.lower()), None)
        if spec is None or not key.allows(spec.name):
            raise ApiError(404, f"The model {MODEL_PREFIX + chat.team!r} does not exist or this key may not use it "
                                "(GET /v1/models lists the teams it may use).", param="model", code="model_not_found")
        await service.access.message(key)  # counted once the request is one the team will answer
        thread = None if chat.thread in (None, "new") else chat.thread
        conversation = await service.conversations.open(key.user, spec.name, thread, store=chat.thread is not None)
        events = _registered(web, conversation.session,
                             service.conversations.turn(conversation, chat.text, typed=chat.typed))
        return await answer(request, key, chat, conversation, events)
    except ApiError as exc:
        return exc.response()
    except ConversationError as exc:
        return ApiError(exc.status, str(exc), code=exc.code).response()
    except NotYours:  # the store's own check (a thread taken between our check and the write)
        return ApiError(404, "No such conversation of yours.", code="conversation_not_found").response()


async def _registered(web: WebApp, session: ChatSession,
                      events: AsyncGenerator[TurnEvent, None]) -> AsyncGenerator[TurnEvent, None]:
    """The turn's events, with the turn registered as running while they flow: a server that stops
    (SIGTERM) stops it and waits for it to record what it did, as it does a page's turn. The
    request's task is the one to wait for: it lives until the last chunk is sent."""
    task = asyncio.current_task()
    if task is not None:
        web.running[task] = session
    try:
        async for event in events:
            yield event
    finally:
        if task is not None:
            web.running.pop(task, None)
