"""``chorus worker`` and ``chorus runs list|show|cancel``: background runs (README, "Background runs")."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from chorus.cli._common import _db, _fail, _metrics_directory, _migrated_url, _quiet_logging
from chorus.cli._root import app

runs_app = typer.Typer(help="Background runs: list them, show one, cancel one.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def _as_dict(run: Any) -> dict[str, Any]:
    result = run.result or {}
    return {"id": run.id, "user": run.user, "team": run.team, "status": run.status, "input": run.input,
            "thread_id": run.thread_id, "created_at": run.created_at.isoformat(),
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None, "attempts": run.attempts,
            "worker": run.worker, "error": run.error, "result": result.get("content"),
            "agents": result.get("agents"), "usage": result.get("usage"), "webhook": run.webhook,
            "webhook_status": run.webhook_status}


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option("--status", help="Only these (comma-separated): queued, running, "
                                                                 "completed, failed, cancelled.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's runs.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """The newest runs first."""
    from chorus.store.runs import STATUSES, list_runs

    _quiet_logging()
    wanted = [s.strip() for s in (status or "").split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise _fail(f"unknown status {', '.join(unknown)}; one of {', '.join(STATUSES)}")
    found = _db(_migrated_url(), lambda engine: list_runs(engine, user, wanted, limit))
    if as_json:
        print(json.dumps([_as_dict(r) for r in found], indent=2))
        return
    if not found:
        typer.echo("No runs." + (" (None with that status.)" if wanted else ""))
        return
    for r in found:
        text = " ".join(r.input.split())
        typer.echo(f"{r.id}  {r.status:<9}  {r.user}  {r.team}  {r.created_at:%Y-%m-%d %H:%M}  "
                   f"attempts {r.attempts}  {text[:50] + ('…' if len(text) > 50 else '')}")


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run's id (run_...).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """One run: its state, its answer, its usage."""
    from chorus.store.runs import get_run

    _quiet_logging()
    run = _db(_migrated_url(), lambda engine: get_run(engine, run_id))
    if run is None:
        raise _fail(f"no run {run_id!r} (see chorus runs list)")
    data = _as_dict(run)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for field in ("id", "status", "user", "team", "thread_id", "created_at", "started_at", "finished_at", "attempts",
                  "worker", "error", "webhook", "webhook_status"):
        if data[field] is not None:
            typer.echo(f"{field}: {data[field]}")
    typer.echo(f"input: {run.input}")
    if data["usage"]:
        usage = data["usage"]
        typer.echo(f"usage: {usage.get('total_tokens')} tokens, ${usage.get('cost') or 0:.4f}")
    if data["result"]:
        typer.echo("\n" + str(data["result"]))


@runs_app.command("cancel")
def runs_cancel(run_id: Annotated[str, typer.Argument(help="The run's id (run_...).")]) -> None:
    """Cancel a run: a queued one at once, a running one within a second (wherever it runs).
    Cancelling a finished run changes nothing."""
    from chorus.store.runs import get_run, request_cancel

    _quiet_logging()

    async def cancel(engine: Any) -> Any:
        found = await get_run(engine, run_id)
        if found is None or found.finished:
            return found
        return await request_cancel(engine, run_id)

    run = _db(_migrated_url(), cancel)
    if run is None:
        raise _fail(f"no run {run_id!r} (see chorus runs list)")
    if run.status == "cancelled":
        typer.echo(f"{run.id} is cancelled.")
    elif run.finished:
        typer.echo(f"{run.id} had already finished ({run.status}); nothing to cancel.")
    else:
        typer.echo(f"{run.id} will stop within a second (it is {run.status}).")


@app.command("worker")
def worker(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Execute background runs from the queue until stopped (SIGTERM, Ctrl+C), CHORUS_RUN_CONCURRENCY
    at once (at least 1). Start as many as you like, on any machine that reaches the database; a run
    whose worker dies goes on in another."""
    _quiet_logging(verbose)
    _metrics_directory()  # before anything imports prometheus_client (chorus.metrics)
    import asyncio
    import signal

    from chorus.auth import ensure_auth_secret
    from chorus.service import Conversations
    from chorus.service.durable import RunHost
    from chorus.service.runs import RunService
    from chorus.settings import get_settings
    from chorus.store.datalayer import ChorusDataLayer
    from chorus.store.db import make_engine
    from chorus.store.files import LocalFileStore, files_root
    from chorus.turn import Chorus

    url = _migrated_url()
    settings = get_settings()
    chorus = Chorus.load()
    for problem in chorus.problems():
        typer.secho(f"warning: {problem}", err=True, fg=typer.colors.YELLOW)

    async def serve() -> None:
        engine = make_engine(url)
        files = LocalFileStore(files_root(settings), ensure_auth_secret(settings.home))
        layer = ChorusDataLayer(url, files=files, max_message_chars=settings.max_message_chars)
        service = RunService(Conversations(chorus, engine, layer), engine)
        host = RunHost(service, url, concurrency=max(1, settings.run_concurrency),
                       global_concurrency=settings.run_global_concurrency, dead_after=settings.worker_dead_after,
                       webhook_hosts=settings.run_webhook_host_list)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await host.start()  # a worker has nothing to do until it has started
        typer.echo(f"Chorus worker {host.worker} is taking runs (up to {host.concurrency} at once).", err=True)
        await stop.wait()
        typer.echo("Stopping: runs cut short go on from their last finished step elsewhere.", err=True)
        await host.stop()
        await asyncio.sleep(0.2)  # the cancelled runs' tasks unwind
        await engine.dispose()

    try:
        asyncio.run(serve())
    finally:
        from chorus import metrics

        metrics.process_ends()
        if chorus.tracer is not None:
            chorus.tracer.close(settings.trace_flush_timeout)
