"""What a turn tells people when something is wrong: :class:`ChorusError` (the user or the operator
can fix it; its message says how), and the fixed notices users see about a degraded server."""

from __future__ import annotations


class ChorusError(Exception):
    """A problem the user (or operator) caused and can fix; the message says how."""


PROBLEMS_NOTICE = (
    "Some of this server's plugins or team files are broken and were skipped, so an agent or a team may be "
    "missing. The operator can see which in the server's log or with `chorus plugins` and `chorus teams`."
)
"""What users see about broken plugins and team files: details (paths, errors) are for operators."""
MEMORY_NOTICE = "Memory and the knowledge base are unavailable on this server for now (the server's log says why)."
