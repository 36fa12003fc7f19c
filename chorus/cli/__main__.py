"""``python -m chorus.cli``: the ``chorus`` command."""

from chorus.cli import main

main()
