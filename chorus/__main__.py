"""``python -m chorus``: the ``chorus`` command, for when the script is not on PATH."""

from chorus.cli import main

main()
