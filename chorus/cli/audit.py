"""``chorus audit``: the audit log (README, "Audit log")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from chorus.cli._common import _db, _fail, _migrated_url, _quiet_logging
from chorus.cli._root import app


@app.command("audit")
def audit_log(
    since: Annotated[str | None, typer.Option(
        "--since", help="Only entries since: a duration back (7d, 12h, 30m) or a date (2026-12-01, UTC).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only entries by or about this user.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action (login, key_created, ...).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
) -> None:
    """Who did what, when and from where: logins (and failed ones), accounts, keys, deleted and
    exported conversations, forgotten memories. Newest first. The log cannot be changed."""
    from chorus.store import audit

    _quiet_logging()
    if action is not None and action not in audit.ACTIONS:
        raise _fail(f"unknown action {action!r}; one of {', '.join(audit.ACTIONS)}")
    moment = _since(since) if since else None
    entries = _db(_migrated_url(), lambda engine: audit.read(engine, since=moment, user=user, action=action,
                                                             limit=limit))
    if as_json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    if not entries:
        typer.echo("No entries.")
        return
    for e in entries:
        where = f" from {e.address}" if e.address else ""
        detail = f"  {json.dumps(e.detail, sort_keys=True)}" if e.detail else ""
        typer.echo(f"{e.at:%Y-%m-%d %H:%M:%S}  {e.actor}{where}  {e.action}  {e.target}{detail}")


def _since(value: str) -> datetime:
    units = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}
    value = value.strip()
    if value[-1:].lower() in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[value[-1].lower()]: int(value[:-1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"--since {value!r}: give a duration (7d, 12h, 30m) or a date (2026-12-01)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

