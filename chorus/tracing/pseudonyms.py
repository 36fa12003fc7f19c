"""Pseudonymous user ids in observability data (``CHORUS_PSEUDONYMOUS_IDS``): a keyed hash
(HMAC-SHA-256) of the user id stands for it in traces and trace feedback, so traces can be shared
without names while one user's traces still go together. The key is ``CHORUS_PSEUDONYM_KEY``, or
one made once in ``CHORUS_HOME/pseudonym_key`` (readable by its owner only); without it nobody can
tell who ``u-…`` is, and with it an operator can find a user's pseudonym (``pseudonym()``)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from chorus.settings import Settings

KEY_FILE = "pseudonym_key"


def _key(settings: Settings) -> bytes:
    if settings.pseudonym_key:
        return settings.pseudonym_key.encode("utf-8")
    home = settings.home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    path = home / KEY_FILE
    if not path.exists():
        # Written whole, then linked into place: a process starting at the same moment reads the
        # one key that won, never a file still being written.
        draft = home / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise ValueError(f"{path} is empty: delete it (a new key is made) or set CHORUS_PSEUDONYM_KEY")
    return key.encode("utf-8")


class Pseudonyms:
    """User ids as observability data shows them: as they are, or as pseudonyms."""

    def __init__(self, settings: Settings) -> None:
        self.on = settings.pseudonymous_ids
        self._key = _key(settings) if self.on else b""

    def __call__(self, user: str) -> str:
        if not self.on or not user:
            return user
        return "u-" + hmac.new(self._key, user.encode("utf-8"), hashlib.sha256).hexdigest()[:20]
