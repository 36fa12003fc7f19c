"""The signing secret of login sessions: given by the operator, or generated once and kept."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_ENV = "CHAINLIT_AUTH_SECRET"
SECRET_FILE = "auth_secret"


def ensure_auth_secret(home: Path) -> str:
    """``CHAINLIT_AUTH_SECRET`` from the environment, else from (or new in) ``home/auth_secret``.

    The file is created readable by its owner only. Changing the secret logs everyone out.
    """
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV]
    home = home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    path = home / SECRET_FILE
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
    else:
        secret = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secret + "\n")
    os.environ[SECRET_ENV] = secret
    return secret
