"""What operators point their tools at (README, "Operations"): ``GET /metrics`` (Prometheus),
``GET /healthz`` (the process serves) and ``GET /readyz`` (the services it needs, each with its
state).

``/metrics`` is for the operator's scraper only: it answers requests from this machine (loopback)
when no token is set, and, with ``CHORUS_METRICS_TOKEN``, requests that bring it as a bearer token
(from anywhere; a proxy that forwards from elsewhere does not make a request local). The health
routes carry no private data and answer everyone.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from typing import Any

import httpx
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chorus import metrics
from chorus._version import __version__
from chorus.models.router import open_circuits
from chorus.store.schema import runs
from chorus.web.context import WebApp, current

log = logging.getLogger("chorus.ops")
CHECK_TIMEOUT_S = 3.0


def install(app: Starlette) -> None:
    for route in (Route("/metrics", metrics_page), Route("/healthz", healthz), Route("/readyz", readyz)):
        app.router.routes.insert(0, route)


def _from_here(request: Request) -> bool:
    """A request from this machine itself: a loopback address, and not forwarded by a proxy (a
    proxy on this machine may pass on requests from anywhere)."""
    if any(h in request.headers for h in ("forwarded", "x-forwarded-for", "x-real-ip")):
        return False
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


async def metrics_page(request: Request) -> Response:
    web = current()
    token = web.chorus.settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return Response("Give the metrics token as 'Authorization: Bearer ...' (CHORUS_METRICS_TOKEN).\n",
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})
    elif not _from_here(request):
        return Response("/metrics answers this machine only; set CHORUS_METRICS_TOKEN to scrape from elsewhere.\n",
                        status_code=403)
    body, kind = metrics.render([metrics.Snapshot(await _read_now(web))])
    return Response(body, media_type=kind)


async def _read_now(web: WebApp) -> dict[str, tuple[str, list[str], dict[tuple[str, ...], float]]]:
    """The figures read when scraped."""
    counts: dict[tuple[str, ...], float] = {("queued",): 0.0, ("running",): 0.0}
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), web.engine().connect() as conn:
            rows = await conn.execute(
                sa.select(runs.c.status, sa.func.count()).where(runs.c.status.in_(("queued", "running")))
                .group_by(runs.c.status))
            for status, count in rows:
                counts[(str(status),)] = float(count)
    except Exception as exc:  # the database is down: /readyz says so; the rest of the page still serves
        log.debug("metrics: could not count background runs: %s", exc)
    circuits: dict[tuple[str, ...], float] = {(model,): float(n) for model, n in open_circuits().items()}
    return {
        "chorus_runs": ("Background runs queued or running now (from the database).", ["status"], counts),
        "chorus_model_circuits_open": ("Models set aside now after failing (in the process that answered).",
                                       ["model"], circuits),
        "chorus_plugin_problems": ("Plugins and team files that failed to load (in the process that answered).",
                                   [], {(): float(len(web.chorus.problems()))}),
    }


async def healthz(request: Request) -> Response:
    """The process serves requests (for a liveness probe): no other check."""
    return JSONResponse({"status": "ok", "version": __version__})


async def readyz(request: Request) -> Response:
    """Whether this process can serve chats, and how well: ``ready`` (200), ``degraded`` (200: memory
    or tracing is off because its store is down; chat works), ``unavailable`` (503: the database
    cannot be reached; nothing can be stored)."""
    web = current()
    checks = dict(zip(("database", "memory", "tracing", "background_runs"), await asyncio.gather(
        _database(web), _memory(web), _tracing(web), _runs(web)), strict=True))
    if checks["database"]["state"] != "ok":
        status, code = "unavailable", 503
    elif any(c["state"] == "down" for c in checks.values()):
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    return JSONResponse({"status": status, "version": __version__, "checks": checks}, status_code=code,
                        headers={"Cache-Control": "no-store"})


async def _database(web: WebApp) -> dict[str, Any]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), web.engine().connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return {"state": "ok"}
    except Exception as exc:
        return {"state": "down", "detail": _short(exc)}


async def _memory(web: WebApp) -> dict[str, Any]:
    settings = web.chorus.settings
    memory = web.chorus.memory
    if memory is None:
        return {"state": "off", "detail": "CHORUS_MEMORY=false"}
    if memory.problem is not None:
        return {"state": "down", "detail": memory.problem}
    if settings.chroma_url:
        found = await _reachable(settings.chroma_url.rstrip("/") + "/api/v2/heartbeat")
        if found is not None:
            return {"state": "down", "detail": f"the Chroma server at {settings.chroma_url} does not answer ({found})"}
    return {"state": "ok"}


async def _tracing(web: WebApp) -> dict[str, Any]:
    tracer = web.chorus.tracer
    if tracer is None:
        return {"state": "off", "detail": "CHORUS_TRACING=false"}
    if tracer.uri.startswith(("http://", "https://")):
        found = await _reachable(tracer.uri.rstrip("/") + "/health")
        if found is not None:
            return {"state": "down", "detail": f"the MLflow server at {tracer.uri} does not answer ({found})"}
    if tracer.problem is not None:
        return {"state": "down", "detail": f"the last trace could not be written: {tracer.problem}"}
    return {"state": "ok"}


async def _runs(web: WebApp) -> dict[str, Any]:
    from chorus.web.api.state import current_host

    host = current_host()
    if host is None:
        return {"state": "off"}
    if host.failed:
        return {"state": "down", "detail": host.failed}
    if not host.ready:
        return {"state": "starting"}
    return {"state": "ok", "executes": host.concurrency}


async def _reachable(url: str) -> str | None:
    """None when ``url`` answers below 500 within the check's time, else why not."""
    try:
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as client:
            answer = await client.get(url)
        return None if answer.status_code < 500 else f"HTTP {answer.status_code}"
    except Exception as exc:
        return _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]
