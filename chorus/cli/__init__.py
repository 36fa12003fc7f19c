"""The ``chorus`` command: serve the page, ask one question, inspect plugins, manage accounts.

One module per group of commands (:mod:`~chorus.cli.serve`, :mod:`~chorus.cli.chat`,
:mod:`~chorus.cli.inspect`, :mod:`~chorus.cli.accounts`, :mod:`~chorus.cli.keys`, :mod:`~chorus.cli.memory`,
:mod:`~chorus.cli.mlflow`, :mod:`~chorus.cli.widget`), all on the one Typer ``app``. Heavy imports
(Chainlit, AutoGen, litellm) happen inside the commands, so ``chorus --help`` answers at once.
"""

from __future__ import annotations

import importlib
import os

from chorus.cli._root import app

# Each module adds its commands to ``app``; ``chorus --help`` lists them in this order.
for _module in ("serve", "chat", "inspect", "accounts", "keys", "runs", "audit", "widget", "mlflow", "memory"):
    importlib.import_module(f"chorus.cli.{_module}")

from chorus.cli.mlflow import _run_process_group  # noqa: E402  (tests and supervisors use it)


def main() -> None:
    """Entry point of the ``chorus`` script."""
    os.umask(0o077)  # whatever a command creates (a first `chorus users add` makes chorus.db) is private
    app()


__all__ = ["_run_process_group", "app", "main"]
