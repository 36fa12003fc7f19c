"""``chorus run``: serve the chat page (the app of chorus/app.py, made by chorus.web.create_app)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Annotated

import typer

from chorus.cli._common import _fail, _metrics_directory, _migrated_url, _quiet_logging
from chorus.cli._root import app

APP_FILE = Path(__file__).resolve().parents[1] / "app.py"  # chorus/app.py


@app.command()
def run(
    port: Annotated[int, typer.Option(help="Port of the chat page.", envvar="CHORUS_PORT")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.", envvar="CHORUS_HOST")] = "127.0.0.1",
    watch: Annotated[bool, typer.Option(help="Reload when source files change (development).")] = False,
) -> None:
    """Serve the chat page (http://localhost:8000 by default)."""
    _quiet_logging()
    _private_data()  # before anything is created: the database, MLflow's, Chroma's, uploads
    _metrics_directory()  # before prometheus_client is imported (chorus.metrics)
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
