"""Background runs over HTTP (README, "Background runs"): ``POST /api/runs`` (202 and the run),
``GET /api/runs`` (``?status=``), ``GET /api/runs/{id}``, ``GET /api/runs/{id}/events`` (server-sent
events a client may reconnect to with ``Last-Event-ID``), ``POST /api/runs/{id}/cancel``, and the run's
approval requests: ``GET /api/runs/{id}/approvals``, ``POST /api/runs/{id}/approvals/{approval_id}``
(``{"approve": true}`` or ``false``, with an optional ``reason``).

The same keys as the OpenAI-compatible API; a run is its key's user's, and another user's run id
gets the same 404 as one that does not exist.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chorus.service.runs import RunRefused
from chorus.store import approvals as approval_store
from chorus.store import runs as store
from chorus.store.approvals import ApprovalError
from chorus.store.keys import ApiKey
from chorus.store.runs import STATUSES, Run
from chorus.turn.approving import wake
from chorus.web.api.chat import MODEL_PREFIX, team_of_model
from chorus.web.api.errors import ApiError
from chorus.web.api.state import Api, api
from chorus.web.context import current

POLL_S = 0.25
KEEPALIVE_S = 15.0


def run_json(run: Run) -> dict[str, Any]:
    """A run as the API shows it."""
    def stamp(moment: Any) -> int | None:
        return None if moment is None else int(moment.timestamp())

    result = run.result or {}
    return {
        "id": run.id, "object": "chorus.run", "status": run.status, "team": run.team, "model": MODEL_PREFIX + run.team,
        "input": run.input, "thread_id": run.thread_id, "created_at": stamp(run.created_at),
        "started_at": stamp(run.started_at), "finished_at": stamp(run.finished_at), "attempts": run.attempts,
        "cancel_requested": run.cancel_requested,
        "result": ({k: result.get(k) for k in ("content", "messages", "agents", "stop_reason", "notices",
                                                "calls_replayed")} if run.result else None),
        "usage": result.get("usage"), "error": run.error,
        "trace": f"/chorus/trace/{run.turn_id}" if run.started_at is not None else None,
        "events": f"/api/runs/{run.id}/events", "approvals": f"/api/runs/{run.id}/approvals",
        "webhook": None if run.webhook is None else {"url": run.webhook, "status": run.webhook_status},
    }


async def _caller(request: Request) -> tuple[Api, ApiKey]:
    service = api(current())
    return service, await service.access.key(request)


async def _theirs(service: Api, key: ApiKey, run_id: str) -> Run:
    found = await store.get_run(service.runs.engine, run_id, key.user)
    if found is None or not key.allows(found.team):  # a key limited to some teams sees their runs only
        raise ApiError(404, f"No run {run_id!r} of yours.", param="run_id", code="run_not_found")
    return found


async def create(request: Request) -> Response:
    try:
        service, key = await _caller(request)
        body = await service.access.body(request)
        if service.host is None or not await service.host.until_ready():
            why = service.host.failed if service.host is not None and service.host.failed else "it is not started"
            raise ApiError(503, f"Background runs are off on this server: DBOS did not start ({why}).",
                           code="runs_unavailable", headers={"Retry-After": "30"})
        if current().draining is not None:
            raise ApiError(503, "The server is restarting: try again in a moment.", code="server_restarting",
                           headers={"Retry-After": "5"})
        team = body.get("team", body.get("model"))
        if not isinstance(team, str) or not team.strip():
            raise ApiError(400, "'team' is required: a team's name, or a model id 'chorus/<team>' (GET /v1/models).",
                           param="team", code="missing_team")
        text = body.get("input")
        if not isinstance(text, str):
            raise ApiError(400, "'input' is required: the message the team answers, as a string.", param="input",
                           code="missing_input")
        thread = body.get("thread_id")
        if thread is not None and (not isinstance(thread, str) or not thread.strip()):
            raise ApiError(400, "'thread_id' is a conversation's id.", param="thread_id", code="invalid_value")
        webhook = body.get("webhook")
        if webhook is not None and not isinstance(webhook, str):
            raise ApiError(400, "'webhook' is a URL.", param="webhook", code="invalid_value")
        await service.access.message(key)
        try:
            run = await service.runs.create(key.user, team_of_model(team.strip()), text, thread_id=thread,
                                            webhook=webhook, key_id=key.id, allowed_teams=key.teams)
        except RunRefused as exc:
            param = {"team_not_found": "team", "webhook_not_allowed": "webhook"}.get(exc.code)
            raise ApiError(exc.status, str(exc), param=param, code=exc.code) from None
        try:
            await service.host.enqueue(run.id)
        except Exception as exc:
            await store.finish_run(service.runs.engine, run.id, "failed", None, f"it could not be queued: {exc}")
            raise ApiError(503, f"The run could not be queued ({exc}); try again.", code="runs_unavailable",
                           headers={"Retry-After": "5"}) from None
        return JSONResponse(run_json(run), status_code=202, headers={"Location": f"/api/runs/{run.id}"})
    except ApiError as exc:
        return exc.response()


async def listing(request: Request) -> Response:
    try:
        service, key = await _caller(request)
        wanted = [s.strip() for s in request.query_params.get("status", "").split(",") if s.strip()]
        unknown = [s for s in wanted if s not in STATUSES]
        if unknown:
            raise ApiError(400, f"Unknown status {', '.join(unknown)}; one of {', '.join(STATUSES)}.", param="status",
                           code="invalid_value")
        limit = request.query_params.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= 500:
            raise ApiError(400, "'limit' is a number from 1 to 500.", param="limit", code="invalid_value")
        found = await store.list_runs(service.runs.engine, key.user, wanted, int(limit))
        return JSONResponse({"object": "list", "data": [run_json(r) for r in found if key.allows(r.team)]})
    except ApiError as exc:
        return exc.response()


async def show(request: Request) -> Response:
    try:
        service, key = await _caller(request)
        return JSONResponse(run_json(await _theirs(service, key, request.path_params["run_id"])))
    except ApiError as exc:
        return exc.response()


async def cancel(request: Request) -> Response:
    """Cancel a run: a queued one at once, a running one within a second. Cancelling a run that is
    cancelled, or already finished, changes nothing and answers with the run as it is."""
    try:
        service, key = await _caller(request)
        run = await _theirs(service, key, request.path_params["run_id"])
        found = await service.runs.cancel(run.id, key.user)
        assert found is not None
        return JSONResponse(run_json(found))
    except ApiError as exc:
        return exc.response()


async def events(request: Request) -> Response:
    """The run's events as server-sent events: ``id`` is the event's number, ``event`` its type,
    ``data`` its JSON; after the last one, ``event: end`` with the run's status. A client that
    reconnects with ``Last-Event-ID: N`` (or ``?after=N``) gets the events after N, each once."""
    try:
        service, key = await _caller(request)
        run = await _theirs(service, key, request.path_params["run_id"])
        start = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        if not start.strip().isdigit():
            raise ApiError(400, "Last-Event-ID (or 'after') is the number of the last event received.",
                           param="after", code="invalid_value")
    except ApiError as exc:
        return exc.response()
    engine = service.runs.engine
    web = current()

    async def stream() -> AsyncIterator[str]:
        last = int(start)
        quiet_since = time.monotonic()
        while web.draining is None:  # a restarting server ends the stream; the client reconnects
            batch = await store.events_after(engine, run.id, last)
            for seq, kind, data in batch:
                yield f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"
                last = seq
            if batch:
                quiet_since = time.monotonic()
                continue
            now = await store.get_run(engine, run.id)
            if now is None or now.finished:
                if await store.events_after(engine, run.id, last, limit=1):
                    continue  # written just before it finished
                status = now.status if now is not None else "failed"
                yield f"event: end\ndata: {json.dumps({'status': status, 'last_event_id': last})}\n\n"
                return
            if time.monotonic() - quiet_since > KEEPALIVE_S:
                yield ": still running\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def approvals(request: Request) -> Response:
    """The run's approval requests (``?status=pending`` for those waiting), newest first."""
    try:
        service, key = await _caller(request)
        run = await _theirs(service, key, request.path_params["run_id"])
        status = request.query_params.get("status") or None
        if status is not None and status not in approval_store.STATUSES:
            raise ApiError(400, f"Unknown status {status}; one of {', '.join(approval_store.STATUSES)}.",
                           param="status", code="invalid_value")
        found = await approval_store.listed(service.runs.engine, user=key.user, run_id=run.id, status=status)
        return JSONResponse({"object": "list", "data": [a.to_dict() for a in found]})
    except ApiError as exc:
        return exc.response()


async def answer(request: Request) -> Response:
    """Approve or deny one of the run's requests; the waiting run goes on within a second. 409 when it
    was already answered or has expired (then it counted as a denial)."""
    try:
        service, key = await _caller(request)
        run = await _theirs(service, key, request.path_params["run_id"])
        body = await service.access.body(request)
        approve = body.get("approve")
        if not isinstance(approve, bool):
            raise ApiError(400, "'approve' is required: true to run the tool, false to refuse it.", param="approve",
                           code="invalid_value")
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise ApiError(400, "'reason' is text.", param="reason", code="invalid_value")
        approval_id = request.path_params["approval_id"]
        engine = service.runs.engine
        existing = await approval_store.get(engine, approval_id, user=key.user)
        if existing is None or existing.run_id != run.id:
            raise ApiError(404, f"No approval request {approval_id!r} in this run.", param="approval_id",
                           code="approval_not_found")
        try:
            decided = await approval_store.decide(engine, approval_id, user=key.user, approved=approve, reason=reason)
        except ApprovalError as exc:
            raise ApiError(409, str(exc), param="approval_id", code="approval_closed") from None
        wake(approval_id)  # when the run waits in this process; else it reads the answer within a second
        return JSONResponse(decided.to_dict())
    except ApiError as exc:
        return exc.response()


ROUTES = [
    Route("/api/runs", create, methods=["POST"]),
    Route("/api/runs", listing, methods=["GET"]),
    Route("/api/runs/{run_id}", show, methods=["GET"]),
    Route("/api/runs/{run_id}/events", events, methods=["GET"]),
    Route("/api/runs/{run_id}/cancel", cancel, methods=["POST"]),
    Route("/api/runs/{run_id}/approvals", approvals, methods=["GET"]),
    Route("/api/runs/{run_id}/approvals/{approval_id}", answer, methods=["POST"]),
]
