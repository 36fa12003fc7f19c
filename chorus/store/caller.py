"""Who is asking: the identity every write to a conversation is checked against.

Chainlit's routes and socket handlers check that a session exists, not that the thread, step,
element or feedback they write belongs to that session's user. Chorus checks ownership once,
in :class:`~chorus.store.datalayer.ChorusDataLayer`, against the caller this module names:

- for an HTTP request, the user of the request's login token (set by
  :class:`chorus.web.guard.CallerGuard`, which every request passes through);
- for a socket event, the user of the Chainlit session it belongs to;
- both, when an HTTP route opens a socket session's context: they must agree.

A write with no caller at all is refused (fail closed), except inside :func:`trusted_writes`,
which Chorus's own maintenance code and tests use on purpose.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from chorus.store.db import StoreError


class NotYours(StoreError):
    """A write to a conversation (or a part of one) that belongs to someone else, or to no one
    this request can prove to be."""


@dataclass
class RequestCaller:
    """The caller of one HTTP request; ``refused`` is set when the data layer refused a write,
    so the guard can answer 403 whatever status the route itself would have given."""

    identifier: str | None
    refused: str | None = None


_request: ContextVar[RequestCaller | None] = ContextVar("chorus_request_caller", default=None)
_trusted: ContextVar[bool] = ContextVar("chorus_trusted_writes", default=False)


def begin_request(identifier: str | None) -> RequestCaller:
    """Name the caller of the HTTP request being served (None: not logged in)."""
    caller = RequestCaller(identifier)
    _request.set(caller)
    return caller


@contextlib.contextmanager
def request_by(identifier: str) -> Iterator[RequestCaller]:
    """In this block the caller is ``identifier`` (an API key's user), as if its request were
    logged in as them."""
    caller = RequestCaller(identifier)
    token = _request.set(caller)
    try:
        yield caller
    finally:
        _request.reset(token)


@contextlib.contextmanager
def trusted_writes() -> Iterator[None]:
    """Writes in this block are Chorus's own (maintenance, tests), not a user's."""
    token = _trusted.set(True)
    try:
        yield
    finally:
        _trusted.reset(token)


TRUSTED = object()
"""What :func:`current_caller` returns inside :func:`trusted_writes`."""


def _session_user() -> str | None:
    """The user of the Chainlit session whose context this code runs in, if any."""
    from chainlit.context import context_var

    context = context_var.get(None)
    session = getattr(context, "session", None)
    user = getattr(session, "user", None)
    identifier = getattr(user, "identifier", None)
    return str(identifier) if identifier else None


def current_caller() -> str | object:
    """The identifier of whoever this write is for, or :data:`TRUSTED`; NotYours when unknown
    or when the request's login and the socket session's user disagree."""
    if _trusted.get():
        return TRUSTED
    request = _request.get()
    session_user = _session_user()
    if request is not None:
        if not request.identifier:
            refuse(request, "this request is not logged in")
        if session_user is not None and session_user != request.identifier:
            refuse(request, "this request's login does not match the chat session it names")
        assert request.identifier is not None
        return request.identifier
    if session_user is None:
        raise NotYours("a write to a conversation with no logged-in caller was refused")
    return session_user


def refuse(request: RequestCaller | None, reason: str) -> None:
    """Raise NotYours, and mark the HTTP request (if any) so it is answered 403."""
    request = request if request is not None else _request.get()
    if request is not None:
        request.refused = reason
    raise NotYours(reason)


__all__ = ["TRUSTED", "NotYours", "RequestCaller", "begin_request", "current_caller", "refuse", "request_by",
           "trusted_writes"]
