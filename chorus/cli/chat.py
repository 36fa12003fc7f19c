"""``chorus ask`` (one turn in the terminal), ``chorus export`` and ``chorus usage``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from chorus.cli._common import _audit, _db, _fail, _migrated_url, _quiet_logging
from chorus.cli._root import app


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="Your message to the team ('-' reads it from standard input).")],
    team: Annotated[str | None, typer.Option(help="Team to ask (see `chorus teams`); default team if unset.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON event per line; the last is 'done'.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log plugin loading and model calls.")] = False,
    files: Annotated[list[Path] | None, typer.Option(
        "--file", "-f", help="Attach a text or PDF file (repeatable), as with the page's paperclip.")] = None,
    save_files: Annotated[Path | None, typer.Option(
        "--save-files", help="Write the files the team's replies carry (a coder's code) under this folder.")] = None,
) -> None:
    """Ask the team one question in the terminal (one turn, no page)."""
    _quiet_logging(verbose)
    if text == "-":
        text = sys.stdin.read()
    from chorus.attachments import Attachment, AttachmentError, read_attachment
    from chorus.turn import Chorus, ChorusError

    chorus = Chorus.load()
    attachments: list[Attachment] = []
    budget = chorus.settings.max_attachment_chars
    for path in files or []:
        try:
            attachments.append(read_attachment(path, path.name, max_chars=max(budget, 0)))
        except (AttachmentError, OSError) as exc:
            raise _fail(f"cannot attach {path}: {exc}") from None
        budget -= len(attachments[-1].text)
    if chorus.memory is not None:
        from chorus.memory.store import VectorStoreError

        # Like the server's first start, a first `chorus ask` finds knowledge/ ingested. When a
        # running server holds the store, the turn goes on without memory and knowledge, and one
        # line says why and what to do (not a warning from every tool that finds it closed).
        try:
            chorus.memory.knowledge.count_sync()  # opens the store: is it ours to open?
            chorus.memory.ingest_default_knowledge_sync()
        except VectorStoreError as exc:
            chorus.memory.problem = str(exc)  # said once, with the reason, by _print_turn
    from chorus.store.db import run_with_engine

    run_with_engine(_migrated_url(), chorus.overlays.refresh)  # the admins' newest versions, as the page

    async def turn() -> int:
        try:
            await chorus.connect_tools(team)  # the team's MCP servers (in this event loop, which runs the turn)
            session = chorus.open_session(team)
        except ChorusError as exc:
            raise _fail(str(exc)) from None
        try:
            return await _ledgered_turn(session, text, as_json, attachments, save_files)
        finally:
            await chorus.mcp.close()

    try:
        code = asyncio.run(turn())
    except BrokenPipeError:  # `chorus ask ... | head`: the reader left, which is fine
        sys.stderr.close()
        code = 0
    raise typer.Exit(code)


async def _ledgered_turn(session: Any, text: str, as_json: bool, attachments: Sequence[Any],
                         save_files: Path | None = None) -> int:
    """The turn, with its model calls recorded in the cost ledger (and budgets applied) like the page's."""
    from chorus.store import make_engine
    from chorus.store.usage import UsageLedger

    engine = make_engine(_migrated_url())
    session.ledger = UsageLedger(engine)
    if not as_json and sys.stdin.isatty() and sys.stderr.isatty():  # a person at the terminal can approve tools
        from chorus.approvals import Approvals

        session.approvals = Approvals(engine, session.chorus.settings.approval_timeout)
    try:
        return await _print_turn(session, text, as_json, attachments, save_files)
    finally:
        await engine.dispose()
        tracer = session.chorus.tracer
        if tracer is not None:  # the trace is written by a background thread: let it finish
            await asyncio.to_thread(tracer.flush, 20.0)


async def _print_turn(session: object, text: str, as_json: bool, attachments: Sequence[Any] = (),
                      save_files: Path | None = None) -> int:
    from chorus.events import (
        ApprovalEvent,
        DoneEvent,
        ErrorEvent,
        HandoffEvent,
        MessageEvent,
        NoticeEvent,
        ProgressEvent,
        TokenEvent,
        ToolCallEvent,
    )
    from chorus.produced import files_in
    from chorus.produced import save_files as save_produced
    from chorus.turn import ChatSession, run_turn

    assert isinstance(session, ChatSession)
    for notice in session.notices():
        if as_json:
            print(json.dumps(notice.to_dict(), ensure_ascii=False), flush=True)
        elif notice.code == "offline_model":
            typer.secho("(offline model: set CHORUS_MODEL for a real one; see README)", dim=True, err=True)
        elif notice.code == "memory_unavailable" and session.chorus.memory is not None:
            # The page's notice points to the server's log; here the reason itself is the news.
            typer.secho(f"note: answering without memory and knowledge: {session.chorus.memory.problem}",
                        fg=typer.colors.YELLOW, err=True)
        else:
            typer.secho(notice.text, fg=typer.colors.YELLOW, err=True)
    speaking: str | None = None
    code = 0
    async for event in run_turn(session, text, attachments=attachments):
        if as_json:
            print(json.dumps(event.to_dict(), ensure_ascii=False), flush=True)
        elif isinstance(event, TokenEvent):
            if speaking != event.agent:
                typer.secho(f"\n[{event.agent}]", bold=True)
                speaking = event.agent
            print(event.text, end="", flush=True)
        elif isinstance(event, MessageEvent) and not event.streamed:
            typer.secho(f"\n[{event.agent}]", bold=True)
            print(event.content, flush=True)
            speaking = None
        elif isinstance(event, ToolCallEvent):
            typer.secho(f"\n  ↳ {event.agent} calls {event.name}({event.arguments})", dim=True, err=True)
            speaking = None
        elif isinstance(event, ProgressEvent):
            typer.secho(f"\n({event.text})", dim=True, err=True)
            speaking = None
        elif isinstance(event, HandoffEvent):
            typer.secho(f"\n  ↪ {event.agent} → {event.target}: {event.content}", dim=True, err=True)
            speaking = None
        elif isinstance(event, ApprovalEvent):
            await _ask_approval(session, event)
            speaking = None
        elif isinstance(event, ErrorEvent):
            typer.secho(f"\nerror: {event.message}", fg=typer.colors.RED, err=True)
        elif isinstance(event, NoticeEvent):
            typer.secho(f"\n{event.text}", fg=typer.colors.YELLOW, err=True)
        if isinstance(event, MessageEvent) and save_files is not None:
            written, problems = save_produced(files_in(event.content), save_files)
            for path in written:
                typer.secho(f"  saved {path}", fg=typer.colors.GREEN, err=True)
            for problem in problems:
                typer.secho(f"  not saved: {problem}", fg=typer.colors.RED, err=True)
        if isinstance(event, DoneEvent):
            if not as_json and speaking is not None:
                print()
            if event.stop_reason in ("error", "rejected", "budget"):
                code = 1
    return code


async def _ask_approval(session: Any, event: Any) -> None:
    """A tool that needs approval, asked at the terminal (``chorus ask`` with a person at it)."""
    from chorus.store import approvals
    from chorus.turn.approving import described, wake

    typer.secho(f"\n  ? {event.agent} wants to run {described(event.tool, event.arguments)}", bold=True, err=True)
    try:
        said = await asyncio.to_thread(input, "    Approve? [y/N] ")
    except EOFError:
        said = ""
    approved = said.strip().lower() in ("y", "yes")
    try:
        await approvals.decide(session.approvals.engine, event.id, user=session.user_id, approved=approved)
    except approvals.ApprovalError as exc:
        typer.secho(f"  {exc}", fg=typer.colors.YELLOW, err=True)
    wake(event.id)


@app.command("export")
def export(
    thread_id: Annotated[str, typer.Argument(help="The conversation's id (the last part of its page URL).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="md or json.")] = "md",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
    user: Annotated[str | None, typer.Option(help="Only if this user owns the conversation.")] = None,
) -> None:
    """Export a stored conversation as Markdown or JSON."""
    from chorus.store.export import ThreadNotFound, load_thread, render

    _quiet_logging()
    if fmt not in ("md", "json"):
        raise _fail(f"unknown format {fmt!r}: use md or json")
    try:
        thread = _db(_migrated_url(), lambda engine: load_thread(engine, thread_id, owner=user))
    except ThreadNotFound as exc:
        raise _fail(str(exc)) from None
    text = render(thread, "md" if fmt == "md" else "json")
    _audit("conversation_exported", thread_id, {"format": fmt, "owner": getattr(thread, "owner", None)})
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    typer.echo(f"Wrote {output}")


@app.command("usage")
def usage_report(
    by: Annotated[str, typer.Option("--by", help="Group by agent, user, model, day or thread.")] = "agent",
    days: Annotated[int | None, typer.Option("--days", help="Only the last N days (today included).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's calls.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Tokens and cost of model calls, from the cost ledger."""
    from chorus.store.usage import UsageLedger

    _quiet_logging()
    if by not in ("agent", "user", "model", "day", "thread"):
        raise _fail(f"unknown grouping {by!r}: use agent, user, model, day or thread")
    if days is not None and days < 1:
        raise _fail("--days must be 1 or more")
    totals = _db(_migrated_url(), lambda engine: UsageLedger(engine).report(by, days=days, user=user))  # type: ignore[arg-type]
    if as_json:
        print(json.dumps([{**t.__dict__, "tokens": t.tokens} for t in totals], indent=2))
        return
    if not totals:
        typer.echo("No model calls recorded" + (f" for {user!r}" if user else "") + ".")
        return
    width = max(len(by), *(len(t.key) for t in totals))
    typer.echo(f"{by:<{width}}  {'calls':>7}  {'prompt':>10}  {'completion':>10}  {'cost (USD)':>11}")
    for t in totals:
        note = f"  ({t.unpriced} unpriced)" if t.unpriced else ""
        typer.echo(f"{t.key:<{width}}  {t.calls:>7,}  {t.prompt_tokens:>10,}  {t.completion_tokens:>10,}  "
                   f"{t.cost:>11.4f}{note}")
    total_cost = sum(t.cost for t in totals)
    typer.echo(f"{'total':<{width}}  {sum(t.calls for t in totals):>7,}  "
               f"{sum(t.prompt_tokens for t in totals):>10,}  {sum(t.completion_tokens for t in totals):>10,}  "
               f"{total_cost:>11.4f}")
