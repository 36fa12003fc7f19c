"""The chat page and Chorus's HTTP side, on Chainlit's server.

- :mod:`~chorus.web.factory`: :func:`create_app`, which loads Chorus and mounts everything below;
- :mod:`~chorus.web.context`: the app's state (:class:`~chorus.web.context.WebApp`), for handlers;
- :mod:`~chorus.web.handlers`: the team menu, a chat's start, each message, the stop button;
- :mod:`~chorus.web.history`: logins, the data layer, feedback, reopening a conversation;
- :mod:`~chorus.web.queue`: a chat's messages answered one at a time, in order;
- :mod:`~chorus.web.render`: a turn's events drawn on the page (streaming, partial saves);
- :mod:`~chorus.web.commands`: the composer's Export and Memories;
- :mod:`~chorus.web.routes`: static files, status, avatars, trace links, texts, widget sign-in;
- :mod:`~chorus.web.guard`: origins, proxies, the page's CSP, cookies, each request's caller;
- :mod:`~chorus.web.uploads`: attachments (size, type, quota) and kept files;
- :mod:`~chorus.web.logins`: logins that end (logout, password change, removed account, widget expiry);
- :mod:`~chorus.web.lifecycle`: start-up, and stopping with the running turns kept;
- :mod:`~chorus.web.chainlit_fixes`: what Chorus changes in Chainlit's own behaviour.
"""

from __future__ import annotations

from typing import Any


def create_app(chorus: Any = None) -> Any:
    """:func:`chorus.web.factory.create_app` (imported on call: importing this package loads no Chainlit)."""
    from chorus.web.factory import create_app as factory

    return factory(chorus)


__all__ = ["create_app"]
