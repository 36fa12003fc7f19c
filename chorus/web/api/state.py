"""What the API keeps per server process: the key check, the conversations, the background runs
and DBOS (chorus.service.durable), started with the server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from chorus.service import Conversations
from chorus.service.durable import RunHost
from chorus.service.runs import RunService
from chorus.store.datalayer import ChorusDataLayer
from chorus.web.api.access import Access
from chorus.web.context import WebApp

log = logging.getLogger("chorus.api")


@dataclass
class Api:
    """What the API keeps per server process (made on its first use, in the server's loop)."""

    access: Access
    conversations: Conversations
    runs: RunService
    host: RunHost | None = None
    """DBOS in this process (begun with the server; ``until_ready`` says whether it started)."""


_api: Api | None = None


def api(web: WebApp) -> Api:
    global _api
    if _api is None or _api.conversations.chorus is not web.chorus:
        settings = web.chorus.settings
        layer = ChorusDataLayer(web.database_url, files=web.files, max_message_chars=settings.max_message_chars)
        conversations = Conversations(web.chorus, web.engine(), layer)
        _api = Api(access=Access(settings, web.engine()), conversations=conversations,
                   runs=RunService(conversations, web.engine()))
    return _api


async def start_runs(web: WebApp) -> None:
    """Launch DBOS in this process, in the background: runs can be accepted, and (unless
    CHORUS_RUN_CONCURRENCY is 0) executed here, the ones a stopped process left included. A
    failure is logged and answered with 503 on /api/runs; chat goes on."""
    service = api(web)
    settings = web.chorus.settings
    host = RunHost(service.runs, web.database_url, concurrency=settings.run_concurrency,
                   global_concurrency=settings.run_global_concurrency, dead_after=settings.worker_dead_after,
                   webhook_hosts=settings.run_webhook_host_list)
    service.host = host
    host.begin()


async def stop_runs() -> None:
    if _api is not None and _api.host is not None:
        await _api.host.stop()


def current_host() -> RunHost | None:
    """This process's DBOS host, if background runs were started here."""
    return None if _api is None else _api.host

