"""``chorus ingest`` (the knowledge base) and ``chorus memory ...`` (what the team remembers about each user)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from chorus.cli._common import _audit, _fail, _memory_service, _quiet_logging
from chorus.cli._root import app


@app.command("ingest")
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (Markdown, text, HTML, PDF).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Add documents to the knowledge base. Unchanged files are skipped; changed ones replaced."""
    from chorus.memory.knowledge import expand_paths

    _quiet_logging()
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise _fail(f"no such file or folder: {', '.join(missing)}")
    service = _memory_service()
    files = list(expand_paths(paths))
    if not files:
        raise _fail("nothing to ingest: no Markdown, text, HTML or PDF files there")
    with typer.progressbar(length=len(files), label=f"Ingesting {len(files)} files", file=sys.stderr) as bar:
        report = service.knowledge.ingest_sync(files, progress=lambda _path: bar.update(1))
    service.close()
    if as_json:
        print(json.dumps({"added": report.added, "replaced": report.replaced, "unchanged": report.unchanged,
                          "failed": report.failed, "chunks": report.chunks}, indent=2))
    else:
        for source, chunks in report.added + report.replaced:
            typer.echo(f"  {source}: {chunks} chunks")
        for source, error in report.failed:
            typer.secho(f"  skipped {source}: {error}", fg=typer.colors.YELLOW, err=True)
        typer.echo(f"Knowledge base: {report.summary()}.")
    if report.failed and not (report.added or report.replaced or report.unchanged):
        raise typer.Exit(1)


memory_app = typer.Typer(help="What the team remembers about each user.", no_args_is_help=True)


app.add_typer(memory_app, name="memory")


@memory_app.command("list")
def memory_list(
    user: Annotated[str, typer.Option("--user", help="The user name (as they log in).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the memories as JSON.")] = False,
) -> None:
    """List a user's memories, oldest first."""
    _quiet_logging()
    service = _memory_service()
    memory = service.for_user(user)
    items = memory.list_sync() if memory is not None else []
    service.close()
    if as_json:
        print(json.dumps([{"id": m.id, "text": m.text, "created_at": m.created_at} for m in items], indent=2))
        return
    if not items:
        typer.echo(f"Nothing is remembered about {user!r}.")
    for item in items:
        typer.echo(f"{item.id}  {item.created_at[:10]}  {item.text}")


@memory_app.command("delete")
def memory_delete(
    user: Annotated[str, typer.Option("--user", help="The user name (as they log in).")],
    ids: Annotated[list[str] | None, typer.Argument(help="Memory ids (from `chorus memory list`).")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Delete all of the user's memories.")] = False,
) -> None:
    """Delete some (by id) or all (--all) of a user's memories."""
    _quiet_logging()
    if not ids and not everything:
        raise _fail("give memory ids, or --all")
    service = _memory_service()
    memory = service.for_user(user)
    if memory is None:
        raise _fail(f"{user!r} is not a user whose memories are kept")
    if everything:
        count = memory.forget_all_sync()
        _audit("memory_forgotten", user, {"count": count, "all": True})
        typer.echo(f"Deleted {count} memories of {user!r}.")
    else:
        unknown = [i for i in ids or [] if not memory.forget_sync(i)]
        _audit("memory_forgotten", user, {"ids": [i for i in ids or [] if i not in unknown]})
        typer.echo(f"Deleted {len(ids or []) - len(unknown)} memories of {user!r}.")
        if unknown:
            service.close()
            raise _fail(f"no memory {', '.join(unknown)} of {user!r}", code=1)
    service.close()
