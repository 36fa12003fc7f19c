"""The ``chorus`` command: serve the page, ask one question, inspect plugins.

Heavy imports (Chainlit, AutoGen, litellm) happen inside the commands, so
``chorus --help`` answers at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="chorus",
    help="Chorus: a team of AI agents answers you. Serve the chat page, ask from the terminal, inspect plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

APP_FILE = Path(__file__).with_name("app.py")


def _quiet_logging(verbose: bool = False) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from chorus.logs import quiet_autogen

    quiet_autogen()


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@app.command()
def run(
    port: Annotated[int, typer.Option(help="Port of the chat page.", envvar="CHORUS_PORT")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.", envvar="CHORUS_HOST")] = "127.0.0.1",
    watch: Annotated[bool, typer.Option(help="Reload when source files change (development).")] = False,
) -> None:
    """Serve the chat page (http://localhost:8000 by default)."""
    _quiet_logging()
    _private_data()  # before anything is created: the database, MLflow's, Chroma's, uploads
    _migrated_url()  # a database that cannot be reached or migrated stops here, with a clear message
    _check_widget_settings()
    os.environ["CHAINLIT_HOST"] = host
    os.environ["CHAINLIT_PORT"] = str(port)
    from chainlit.cli import run_chainlit
    from chainlit.config import FILES_DIRECTORY, config  # importing it makes .files (private now)

    _make_private(FILES_DIRECTORY)  # Chainlit's copies of this session's uploads, left by a crash
    config.run.headless = True
    config.run.watch = watch
    typer.echo(f"Chorus is serving the chat page on http://{'localhost' if host == '127.0.0.1' else host}:{port}")
    run_chainlit(str(APP_FILE))


def _private_data() -> None:
    """Keep what Chorus stores (password hashes, every conversation, traces, uploads) to the
    user that runs it: everything this process and its libraries create is private from here
    on (umask 077: files 0600, folders 0700), and an existing data directory is tightened."""
    from chorus.settings import get_settings

    os.umask(0o077)
    home = get_settings().home.expanduser().resolve()
    try:
        user_home = Path.home().resolve()
    except RuntimeError:  # no home directory known
        user_home = Path(home.anchor)
    if home == user_home or home in user_home.parents:  # not ours to lock down
        logging.getLogger("chorus").warning(
            "CHORUS_HOME is %s: not changing its permissions; give Chorus a data directory of its own", home)
        return
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail(f"cannot create the data directory {home} (CHORUS_HOME): {exc.strerror}") from None
    _make_private(home)


def _make_private(root: Path) -> None:
    """Remove group and other access from ``root`` and everything under it (symbolic links are
    neither changed nor followed); say once what was changed."""
    changed, failed = 0, []
    for parent, dirs, files in os.walk(root):
        paths = [parent] if parent == str(root) else []
        for name in (*dirs, *files):
            paths.append(os.path.join(parent, name))
        for path in paths:
            try:
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode) and mode & 0o077:
                    os.chmod(path, stat.S_IMODE(mode) & ~0o077)
                    changed += 1
            except OSError as exc:  # e.g. a file another user owns
                failed.append(f"{path} ({exc.strerror})")
    log = logging.getLogger("chorus")
    if changed:
        log.warning("%s was readable by other users: made %d files and folders private to this user", root, changed)
    if failed:
        log.warning("could not make private: %s", ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else ""))


def _check_widget_settings() -> None:
    """A malformed CHORUS_ALLOWED_ORIGINS or a weak CHORUS_WIDGET_SECRET stops `chorus run` here."""
    from chorus.settings import get_settings
    from chorus.widget import ensure_widget_secret

    settings = get_settings()
    try:
        if settings.allowed_origin_list():
            ensure_widget_secret(settings.home)
    except ValueError as exc:
        raise _fail(f"CHORUS_ALLOWED_ORIGINS / CHORUS_WIDGET_SECRET: {exc}") from None
    try:
        settings.trusted_proxy_networks()
    except ValueError as exc:
        raise _fail(str(exc)) from None


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="Your message to the team ('-' reads it from standard input).")],
    team: Annotated[str | None, typer.Option(help="Team to ask (see `chorus teams`); default team if unset.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON event per line; the last is 'done'.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log plugin loading and model calls.")] = False,
    files: Annotated[list[Path] | None, typer.Option(
        "--file", "-f", help="Attach a text or PDF file (repeatable), as with the page's paperclip.")] = None,
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
    try:
        session = chorus.open_session(team)
    except ChorusError as exc:
        raise _fail(str(exc)) from None
    try:
        code = asyncio.run(_ledgered_turn(session, text, as_json, attachments))
    except BrokenPipeError:  # `chorus ask ... | head`: the reader left, which is fine
        sys.stderr.close()
        code = 0
    raise typer.Exit(code)


async def _ledgered_turn(session: Any, text: str, as_json: bool, attachments: Sequence[Any]) -> int:
    """The turn, with its model calls recorded in the cost ledger (and budgets applied) like the page's."""
    from chorus.store import make_engine
    from chorus.store.usage import UsageLedger

    engine = make_engine(_migrated_url())
    session.ledger = UsageLedger(engine)
    try:
        return await _print_turn(session, text, as_json, attachments)
    finally:
        await engine.dispose()
        tracer = session.chorus.tracer
        if tracer is not None:  # the trace is written by a background thread: let it finish
            await asyncio.to_thread(tracer.flush, 20.0)


async def _print_turn(session: object, text: str, as_json: bool, attachments: Sequence[Any] = ()) -> int:
    from chorus.events import DoneEvent, ErrorEvent, MessageEvent, NoticeEvent, TokenEvent, ToolCallEvent
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
        elif isinstance(event, ErrorEvent):
            typer.secho(f"\nerror: {event.message}", fg=typer.colors.RED, err=True)
        elif isinstance(event, NoticeEvent):
            typer.secho(f"\n{event.text}", fg=typer.colors.YELLOW, err=True)
        if isinstance(event, DoneEvent):
            if not as_json and speaking is not None:
                print()
            if event.stop_reason in ("error", "rejected", "budget"):
                code = 1
    return code


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print the plugins as a JSON list.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Exit with status 1 if a plugin is in error or a CHORUS_PLUGINS entry matches none.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print each failure's traceback.")] = False,
) -> None:
    """List every plugin: which distribution it was loaded from, what it registers and whether it
    loaded (status ok/error with the reason). With --check, a deployment check: exit 1 on any problem."""
    _quiet_logging()
    logging.getLogger("chorus.plugins").setLevel(logging.CRITICAL)  # errors are shown below instead
    from chorus.plugins import load_plugins
    from chorus.settings import get_settings

    registry = load_plugins(get_settings())
    code = 1 if check and not registry.ok else 0
    if as_json:
        print(json.dumps([r.to_dict() for r in registry.reports], indent=2))
        for error in registry.errors:  # the list stays a list of plugins: the allow-list's own errors go here
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code)
    if not registry.reports:
        typer.echo("No plugins loaded (check CHORUS_PLUGINS).")
    for r in registry.reports:
        color = typer.colors.GREEN if r.status == "ok" else typer.colors.RED
        typer.secho(f"{r.name}  [{r.status}]", fg=color, bold=True, nl=False)
        typer.echo(f"  from {r.distribution} {r.version}{'  (built in)' if r.builtin else ''}")
        typer.echo(f"    module: {r.module}  (allow as {r.qualified_name})")
        if r.agents:
            typer.echo(f"    agents: {', '.join(r.agents)}")
        if r.tools:
            typer.echo(f"    tools:  {', '.join(r.tools)}")
        if r.teams:
            typer.echo(f"    teams:  {', '.join(r.teams)}")
        if r.error:
            typer.secho(f"    error:  {r.error}", fg=typer.colors.RED)
        if r.where:
            typer.secho(f"    at:     {r.where}", fg=typer.colors.RED)
        if verbose and r.traceback:
            typer.echo("    " + r.traceback.rstrip().replace("\n", "\n    "))
    for error in registry.errors:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    if check:
        problems = len(registry.problems) + len(registry.errors)
        typer.secho("check: all plugins loaded" if code == 0 else f"check failed: {problems} problem(s)",
                    fg=typer.colors.GREEN if code == 0 else typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def teams(
    as_json: Annotated[bool, typer.Option("--json", help="Print the teams as a JSON list.")] = False,
) -> None:
    """List the teams of this deployment (the agents/ folder) and their members."""
    _quiet_logging()
    from chorus.teams.build import resolve_members
    from chorus.turn import Chorus

    chorus = Chorus.load()
    if as_json:
        rows = []
        for spec in chorus.catalog.teams.values():
            members, problems = resolve_members(spec, chorus.registry)
            rows.append({"name": spec.name, "title": spec.title, "type": spec.type, "default": spec.default,
                         "members": [m.name for m in members], "problems": problems, "source": spec.source})
        print(json.dumps({"teams": rows, "errors": chorus.catalog.errors}, indent=2))
        return
    for spec in chorus.catalog.teams.values():
        members, problems = resolve_members(spec, chorus.registry)
        default = "  (default)" if spec.default else ""
        typer.secho(f"{spec.name}{default}", bold=True)
        typer.echo(f"    {spec.title}: {spec.description or spec.type}")
        typer.echo(f"    {spec.type}; members: {', '.join(m.name for m in members) or '-'}")
        if spec.source:
            typer.echo(f"    from: {spec.source}")
        for problem in problems:
            typer.secho(f"    problem: {problem}", fg=typer.colors.YELLOW)
    for error in chorus.catalog.errors:
        typer.secho(f"skipped: {error}", fg=typer.colors.RED)


users_app = typer.Typer(help="Password accounts: adding one turns on logins and conversation history.",
                        no_args_is_help=True)
db_app = typer.Typer(help="The database (SQLite in CHORUS_HOME, or CHORUS_DATABASE_URL).", no_args_is_help=True)
app.add_typer(users_app, name="users")
widget_app = typer.Typer(help="The chat widget for other websites (CHORUS_ALLOWED_ORIGINS; docs/widget.md).",
                         no_args_is_help=True)
app.add_typer(widget_app, name="widget")
app.add_typer(db_app, name="db")


def _migrated_url() -> str:
    from chorus.settings import get_settings
    from chorus.store import StoreError, database_url, upgrade

    try:
        url = database_url(get_settings())
        upgrade(url)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    return url


def _db(url: str, action: Any) -> Any:
    """``chorus.store.db.run_with_engine``, imported when a command needs it (keeps --help fast)."""
    from chorus.store.db import run_with_engine

    return run_with_engine(url, action)


def _set_password(name: str, password_stdin: bool, prompt: str, action: Any) -> None:
    """Read a password (standard input, or asked twice) and ``action(engine, name, password)``."""
    from chorus.store.accounts import AccountError

    _quiet_logging()
    url = _migrated_url()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        from chorus.store.accounts import MIN_PASSWORD

        # Asked again until it is long enough: a person at the prompt should not start over.
        while len(password := typer.prompt(prompt, hide_input=True, confirmation_prompt=True)) < MIN_PASSWORD:
            typer.echo(f"The password must have at least {MIN_PASSWORD} characters; try again.", err=True)
    try:
        _db(url, lambda engine: action(engine, name, password))
    except AccountError as exc:
        raise _fail(str(exc)) from None


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user name to log in with.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (for scripts).")
    ] = False,
) -> None:
    """Add a password account (asks for the password twice). Restart `chorus run` after the first one."""
    from chorus.store.accounts import add_account

    _set_password(name, password_stdin, "Password", add_account)
    typer.echo(f"Added user {name.strip()!r}. Logins and history are on once `chorus run` (re)starts.")


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="The user whose password changes.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from standard input (for scripts).")
    ] = False,
) -> None:
    """Set a new password (asks twice). Every login made with the old one ends, on every worker."""
    from chorus.store.accounts import change_password

    _set_password(name, password_stdin, "New password", change_password)
    typer.echo(f"Changed the password of {name.strip()!r}; its open sessions have ended.")


@users_app.command("list")
def users_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the accounts as JSON.")] = False,
) -> None:
    """List the password accounts."""
    from chorus.store.accounts import list_accounts

    _quiet_logging()
    rows = _db(_migrated_url(), list_accounts)
    if as_json:
        print(json.dumps([{"name": a.identifier, "created_at": str(a.created_at)} for a in rows], indent=2))
        return
    if not rows:
        typer.echo("No accounts: the page runs without logins or history. Add one with `chorus users add NAME`.")
    for account in rows:
        typer.echo(f"{account.identifier}  (since {account.created_at:%Y-%m-%d})" if account.created_at
                   else account.identifier)


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="The user name to remove.")]) -> None:
    """Remove a password account with its conversations, files and memories.

    Its open sessions end at their next page load.
    """
    from chorus.settings import get_settings
    from chorus.store.accounts import AccountError, remove_account
    from chorus.store.files import files_root

    _quiet_logging()
    root = files_root(get_settings())
    try:
        _db(_migrated_url(), lambda engine: remove_account(engine, name, root))
    except AccountError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Removed user {name!r}.")
    _forget_memories_of(name)


def _forget_memories_of(name: str) -> None:
    """A removed account's memories go too: a later account of that name must not inherit them."""
    from chorus.memory import MemoryService
    from chorus.memory.store import VectorStoreError
    from chorus.settings import get_settings

    settings = get_settings()
    if not settings.memory:
        return
    service = MemoryService(settings)
    try:
        memory = service.for_user(name.strip())
        if memory is not None:
            memory.forget_all_sync()
        service.forget_user_files_sync(name.strip())  # and the files attached in their conversations
    except VectorStoreError as exc:
        typer.secho(f"warning: the memories of {name!r} were not deleted ({exc}). Run `chorus memory delete "
                    f"--user {name} --all` once the store is free.", fg=typer.colors.YELLOW, err=True)
    finally:
        service.close()


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
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    typer.echo(f"Wrote {output}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision (also done at start-up)."""
    from sqlalchemy.engine import make_url

    from chorus.store.db import current_revision

    _quiet_logging()
    url = _migrated_url()
    typer.echo(f"{make_url(url).render_as_string(hide_password=True)} is at revision {current_revision(url)}.")


@app.command("mlflow")
def mlflow_ui(
    port: Annotated[int, typer.Option("--port", help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option("--host", help="Interface to bind (loopback by default: traces hold "
                                                      "conversations; put authentication in front before "
                                                      "exposing it).")] = "127.0.0.1",
    backend_store_uri: Annotated[str | None, typer.Option(
        "--backend-store-uri", help="Serve this store (e.g. postgresql://...) as the tracking server of "
                                    "several workers; default: Chorus's own (CHORUS_MLFLOW_TRACKING_URI or "
                                    "mlflow.db).")] = None,
    artifacts_destination: Annotated[str | None, typer.Option(
        "--artifacts-destination", help="Where the server keeps artifacts (default: CHORUS_HOME/mlartifacts).",
    )] = None,
    workers: Annotated[int, typer.Option("--workers", help="MLflow's web worker processes.")] = 1,
    mlflow_args: Annotated[list[str] | None, typer.Argument(
        help="More `mlflow server` options, after `--` (e.g. -- --allowed-hosts mlflow-host:5000).")] = None,
) -> None:
    """Serve the MLflow UI and tracking server (every turn's trace, feedback and cost), offline-safe.

    Runs `mlflow server` with the offline switches; Ctrl+C, SIGTERM or SIGHUP stops it with all its workers.
    """
    from chorus._env import apply_offline_defaults
    from chorus.settings import get_settings
    from chorus.tracing import forget_ui, record_ui, tracking_uri

    settings = get_settings()
    uri = backend_store_uri or tracking_uri(settings)
    if uri.startswith("http"):
        raise _fail(f"traces go to the MLflow server at {uri}: open its UI there (or serve a store here with "
                    "--backend-store-uri)")
    home = settings.home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    apply_offline_defaults()  # already done at import; explicit, since `mlflow server` hangs offline without it
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--artifacts-destination", artifacts_destination or str((home / "mlartifacts").resolve()),
               "--host", host, "--port", str(port), "--workers", str(workers), *(mlflow_args or [])]
    typer.echo(f"MLflow UI for {_hide_password(uri)} on http://{host}:{port} (the chat page's trace links "
               "lead here unless CHORUS_MLFLOW_UI_URL says otherwise; Ctrl+C stops it)")
    record_ui(home, host, port)  # read by the chat server at each trace link, until this stops
    try:
        code = _run_process_group(command)
    finally:
        forget_ui(home)
    if code:
        raise _fail(f"mlflow server exited with status {code}", code=1)


def _hide_password(uri: str) -> str:
    import re

    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", uri)


def _run_process_group(command: list[str], stop_timeout: float = 10.0) -> int:
    """Run ``command`` in a process group of its own until it exits or this process is told to stop;
    then stop the whole group (and any process that left it). The command's exit status, 0 when stopped.

    `mlflow server` starts uvicorn workers and a job runner with seven huey consumers; when its
    main process is stopped alone, the consumers survive. So every process is signalled: SIGTERM
    first, SIGKILL after ``stop_timeout`` seconds (or at once on a second Ctrl+C).
    """
    import signal
    import subprocess
    import time

    stops: list[int] = []
    handled = [getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, lambda signum, _frame: stops.append(signum)) for signum in handled}
    try:
        proc = subprocess.Popen(command, process_group=0)
        try:
            while proc.poll() is None and not stops:
                time.sleep(0.1)
        finally:
            tree = _descendants(proc.pid)  # before anything stops: orphans leave the tree
            _signal_group(proc.pid, tree, signal.SIGTERM)
            deadline = time.monotonic() + stop_timeout
            # (proc.poll() also reaps our child, so that it does not count as alive.)
            while ((proc.poll() is None or _alive(tree, proc.pid)) and time.monotonic() < deadline
                   and len(stops) < 2):
                time.sleep(0.05)
            if proc.poll() is None or _alive(tree, proc.pid):
                _signal_group(proc.pid, tree, signal.SIGKILL)
            proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if stops else proc.returncode


def _processes() -> dict[int, tuple[int, int, str]]:
    """Every running process: pid -> (parent pid, process group, start time), from /proc (zombies left out)."""
    table: dict[int, tuple[int, int, str]] = {}
    if not Path("/proc/self/stat").exists():
        return table  # not Linux: the process group alone is signalled
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[19])
    return table


def _descendants(pid: int) -> dict[int, str]:
    """``pid`` and every process under it: pid -> start time (a pid reused later is not the same process)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for child, (parent, *_rest) in table.items():
        children.setdefault(parent, []).append(child)
    found = {pid: table[pid][2]} if pid in table else {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = table[child][2]
                todo.append(child)
    return found


def _survivors(tree: dict[int, str], group: int) -> set[int]:
    """The processes of ``tree`` or of process group ``group`` that still run."""
    return {pid for pid, (_parent, pgid, started) in _processes().items()
            if pgid == group or tree.get(pid) == started}


def _alive(tree: dict[int, str], group: int) -> bool:
    return bool(_survivors(tree, group))


def _signal_group(group: int, tree: dict[int, str], signum: int) -> None:
    import contextlib

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
    for pid in _survivors(tree, group):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


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


def _memory_service() -> Any:
    """The memory service with its store open, or a clear failure (memory off, store busy)."""
    from chorus.memory import MemoryService
    from chorus.memory.store import VectorStoreError
    from chorus.plugins.manager import load_plugins
    from chorus.settings import get_settings

    settings = get_settings()
    if not settings.memory:
        raise _fail("memory and the knowledge base are off (CHORUS_MEMORY=false)")
    service = MemoryService(settings, load_plugins(settings).embedders)
    try:
        service.store.client()
    except VectorStoreError as exc:
        raise _fail(str(exc)) from None
    return service


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
        typer.echo(f"Deleted {memory.forget_all_sync()} memories of {user!r}.")
    else:
        unknown = [i for i in ids or [] if not memory.forget_sync(i)]
        typer.echo(f"Deleted {len(ids or []) - len(unknown)} memories of {user!r}.")
        if unknown:
            service.close()
            raise _fail(f"no memory {', '.join(unknown)} of {user!r}", code=1)
    service.close()


def main() -> None:
    """Entry point of the ``chorus`` script."""
    os.umask(0o077)  # whatever a command creates (a first `chorus users add` makes chorus.db) is private
    app()


def _known_team(team: str | None) -> str | None:
    if team is None:
        return None
    from chorus.turn import Chorus, ChorusError

    try:
        return Chorus.load().team(team).name
    except ChorusError as exc:
        raise _fail(str(exc)) from None


@widget_app.command("snippet")
def widget_snippet(
    server: Annotated[str, typer.Option("--server", help="The address your visitors reach Chorus at.")] = (
        "http://localhost:8000"),
    team: Annotated[str | None, typer.Option("--team", help="The team that answers in this embed.")] = None,
) -> None:
    """Print the HTML to paste into a page of your site (see docs/widget.md)."""
    _quiet_logging()
    from chorus.settings import normalise_origin
    from chorus.widget import snippet

    try:
        normalise_origin(server)
    except ValueError as exc:
        raise _fail(f"--server: {exc}") from None
    typer.echo(snippet(server, team=_known_team(team)), nl=False)


@widget_app.command("token")
def widget_token(
    user: Annotated[str, typer.Option("--user", help="Your site's id for the visitor.")],
    ttl: Annotated[int, typer.Option("--ttl", help="Seconds the token stays valid (at most 86400).")] = 300,
    team: Annotated[str | None, typer.Option("--team", help="The team that answers this visitor.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="The visitor's name, as shown in the chat.")] = None,
) -> None:
    """Issue a widget sign-in token, signed with the widget secret (CHORUS_WIDGET_SECRET, or
    widget_secret in CHORUS_HOME, made on first use)."""
    _quiet_logging()
    from chorus.settings import get_settings
    from chorus.widget import WidgetTokenError, ensure_widget_secret, make_token

    secret = ensure_widget_secret(get_settings().home)
    try:
        typer.echo(make_token(user, secret=secret, ttl_s=ttl, team=_known_team(team), name=name))
    except WidgetTokenError as exc:
        raise _fail(str(exc)) from None


if __name__ == "__main__":
    main()
