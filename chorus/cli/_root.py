"""The ``chorus`` Typer app itself, which every command module adds its commands to."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="chorus",
    help="Chorus: a team of AI agents answers you. Serve the chat page, ask from the terminal, inspect plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
