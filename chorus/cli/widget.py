"""``chorus widget snippet|token``: the chat widget for other websites (docs/widget.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from chorus.cli._common import _fail, _known_team, _quiet_logging
from chorus.cli._root import app

widget_app = typer.Typer(help="The chat widget for other websites (CHORUS_ALLOWED_ORIGINS; docs/widget.md).",
                         no_args_is_help=True)


app.add_typer(widget_app, name="widget")


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
