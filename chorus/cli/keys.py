"""``chorus keys create|list|revoke``: API keys for the OpenAI-compatible API (README, "API")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from chorus.cli._common import _db, _fail, _migrated_url, _quiet_logging
from chorus.cli._root import app

keys_app = typer.Typer(help="API keys: a program reaches the teams over HTTP as the key's user.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option("--user", help="The account the key acts as (chorus users add).")],
    team: Annotated[list[str] | None, typer.Option(
        "--team", help="A team the key may use (repeatable); default: every team.")] = None,
    expires: Annotated[str | None, typer.Option(
        "--expires", help="When it stops working: a duration (30d, 12h) or a date (2027-01-31, UTC).")] = None,
    name: Annotated[str, typer.Option("--name", help="A label to recognise it by in `chorus keys list`.")] = "",
) -> None:
    """Make a key and print it once (only a hash of it is stored)."""
    from chorus.store.keys import KeyProblem, create_key, parse_expiry
    from chorus.turn import Chorus

    _quiet_logging()
    if team:
        known = Chorus.load().catalog.teams
        unknown = [t for t in team if t not in known]
        if unknown:
            raise _fail(f"no team {', '.join(map(repr, unknown))}; teams: {', '.join(sorted(known))}")
    url = _migrated_url()
    try:
        expires_at = parse_expiry(expires) if expires else None
        key, stored = _db(url, lambda engine: create_key(engine, user, name=name, teams=team, expires_at=expires_at))
    except KeyProblem as exc:
        raise _fail(str(exc)) from None
    typer.echo(key)
    limits = f"teams {', '.join(stored.teams)}" if stored.teams else "every team"
    until = f", until {stored.expires_at:%Y-%m-%d %H:%M} UTC" if stored.expires_at else ""
    typer.secho(f"Key {stored.id} for {stored.user} ({limits}{until}). Keep it now: it is not shown again.",
                err=True, dim=True)


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False,
) -> None:
    """The keys (never the keys themselves: their first characters), with their state and last use."""
    from chorus.store.keys import list_keys

    _quiet_logging()
    found = _db(_migrated_url(), lambda engine: list_keys(engine, user))
    now = datetime.now(UTC)
    if as_json:
        print(json.dumps([{
            "id": k.id, "prefix": k.prefix, "user": k.user, "name": k.name, "teams": list(k.teams or []) or None,
            "state": k.state(now), "created_at": k.created_at.isoformat(),
            "expires_at": k.expires_at.isoformat() if k.expires_at else None,
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None} for k in found], indent=2))
        return
    if not found:
        whose = f" for {user!r}" if user else ""
        typer.echo(f"No API keys{whose}. Make one with: chorus keys create --user NAME")
        return
    for k in found:
        used = f"last used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used"
        teams = ", ".join(k.teams) if k.teams else "every team"
        label = f" {k.name!r}" if k.name else ""
        typer.echo(f"{k.id}  {k.prefix}…  {k.user}{label}  {k.state(now)}  {teams}  "
                   f"created {k.created_at:%Y-%m-%d}  {used}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (or its first characters, as listed).")],
) -> None:
    """Revoke a key: every request with it is refused from now on, on every worker."""
    from chorus.store.keys import KeyProblem, revoke_key

    _quiet_logging()
    try:
        revoked = _db(_migrated_url(), lambda engine: revoke_key(engine, key_id))
    except KeyProblem as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Revoked key {revoked.id} ({revoked.prefix}…) of {revoked.user}.")
