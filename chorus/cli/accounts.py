"""``chorus users ...`` (password accounts) and ``chorus db upgrade``."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from chorus.cli._common import _db, _fail, _migrated_url, _quiet_logging
from chorus.cli._root import app

users_app = typer.Typer(help="Password accounts: adding one turns on logins and conversation history.",
                        no_args_is_help=True)


db_app = typer.Typer(help="The database (SQLite in CHORUS_HOME, or CHORUS_DATABASE_URL).", no_args_is_help=True)


app.add_typer(users_app, name="users")


app.add_typer(db_app, name="db")


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
    admin: Annotated[bool, typer.Option("--admin", help="An admin: may use the admin page (/admin).")] = False,
) -> None:
    """Add a password account (asks for the password twice). Restart `chorus run` after the first one."""
    from chorus.store.accounts import add_account

    _set_password(name, password_stdin, "Password",
                  lambda engine, who, password: add_account(engine, who, password, admin=admin))
    role = " as an admin (the admin page is /admin)" if admin else ""
    typer.echo(f"Added user {name.strip()!r}{role}. Logins and history are on once `chorus run` (re)starts.")


def _set_admin(name: str, admin: bool) -> None:
    from chorus.store.accounts import AccountError, set_admin

    _quiet_logging()
    try:
        _db(_migrated_url(), lambda engine: set_admin(engine, name, admin))
    except AccountError as exc:
        raise _fail(str(exc)) from None


@users_app.command("promote")
def users_promote(name: Annotated[str, typer.Argument(help="The user who becomes an admin.")]) -> None:
    """Make a user an admin (the admin page, /admin). Takes effect at once, no restart."""
    _set_admin(name, True)
    typer.echo(f"{name.strip()!r} is an admin now.")


@users_app.command("demote")
def users_demote(name: Annotated[str, typer.Argument(help="The admin who becomes an ordinary user.")]) -> None:
    """Take a user's admin role away. Their next request to the admin page is refused."""
    _set_admin(name, False)
    typer.echo(f"{name.strip()!r} is no longer an admin.")


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
        print(json.dumps([{"name": a.identifier, "created_at": str(a.created_at), "admin": a.admin} for a in rows],
                         indent=2))
        return
    if not rows:
        typer.echo("No accounts: the page runs without logins or history. Add one with `chorus users add NAME`.")
    for account in rows:
        role = "  admin" if account.admin else ""
        typer.echo(f"{account.identifier}  (since {account.created_at:%Y-%m-%d}){role}" if account.created_at
                   else account.identifier + role)


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


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision (also done at start-up)."""
    from sqlalchemy.engine import make_url

    from chorus.store.db import current_revision

    _quiet_logging()
    url = _migrated_url()
    typer.echo(f"{make_url(url).render_as_string(hide_password=True)} is at revision {current_revision(url)}.")
