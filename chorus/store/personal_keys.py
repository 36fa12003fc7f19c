"""Users' own provider keys (README, "Your own provider key"): encrypted at rest with Fernet
(``cryptography``), the encryption key given by ``CHORUS_SECRET_KEY`` or generated once into
``CHORUS_HOME/secret_key`` (readable by its owner only). A key is only ever decrypted for its own
user's calls; what is shown is its last four characters."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chorus.secrets import hide
from chorus.store.schema import personal_keys

SECRET_FILE = "secret_key"
MIN_KEY_CHARS, MAX_KEY_CHARS = 16, 512
PROVIDERS = ("openai", "anthropic", "gemini", "mistral", "groq", "deepseek", "together_ai", "openrouter", "cohere",
             "xai", "fireworks_ai", "perplexity", "cerebras")
"""Providers whose calls a key alone pays for: a personal key's model names one of them
(``openai/gpt-4o-mini``), never a provider that takes credentials from the server's environment
(cloud service accounts, a local server) and would bill the deployment instead."""


def check_model(model: str) -> str | None:
    """Why ``model`` cannot go with a personal key, or None."""
    provider, _, name = model.strip().partition("/")
    if not name or provider not in PROVIDERS:
        return (f"name the provider and the model, like openai/gpt-4o-mini; personal keys work with "
                f"{', '.join(PROVIDERS)}")
    return None


@dataclass(frozen=True)
class PersonalKey:
    """A user's own provider key and the model it is for."""

    model: str
    hint: str
    """The key's last four characters, all that is ever shown."""
    key: str = field(repr=False)

    @property
    def masked(self) -> str:
        return f"••••{self.hint}"


def _fernet(secret: str) -> object:
    from cryptography.fernet import Fernet

    try:  # a Fernet key as given (Fernet.generate_key())...
        return Fernet(secret.encode())
    except ValueError:  # ...or any passphrase, stretched to one
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def encryption_secret(home: Path, configured: str | None) -> str:
    """``CHORUS_SECRET_KEY``, else the key in ``home/secret_key`` (made on first use, mode 0600)."""
    if configured:
        return configured
    from cryptography.fernet import Fernet

    home = home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    path = home / SECRET_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secret = Fernet.generate_key().decode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it first: use theirs
        import time

        time.sleep(0.2)
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret


class PersonalKeys:
    """The stored keys, encrypted; decrypted only by :meth:`get` for the key's own user."""

    def __init__(self, engine: AsyncEngine, secret: str) -> None:
        self.engine = engine
        self._cipher = _fernet(secret)

    async def set(self, user: str, key: str, model: str) -> PersonalKey:
        key, model = key.strip(), model.strip()
        if not MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS or any(c.isspace() for c in key):
            raise ValueError(f"a provider key is one word of {MIN_KEY_CHARS} to {MAX_KEY_CHARS} characters")
        if not model:
            raise ValueError("say which model your key is for (a litellm model string, like openai/gpt-4o-mini)")
        problem = check_model(model)
        if problem:
            raise ValueError(problem)
        encrypted = self._cipher.encrypt(key.encode()).decode()  # type: ignore[attr-defined]
        row = {"encrypted": encrypted, "model": model, "hint": key[-4:], "updated_at": datetime.now(UTC)}
        async with self.engine.begin() as conn:
            updated = await conn.execute(sa.update(personal_keys).where(personal_keys.c.user_identifier == user)
                                         .values(**row))
            if not updated.rowcount:
                await conn.execute(sa.insert(personal_keys).values(user_identifier=user, **row))
        hide(key)
        return PersonalKey(model=model, hint=key[-4:], key=key)

    async def get(self, user: str) -> PersonalKey | None:
        """``user``'s key, decrypted (None without one, or when it cannot be decrypted: the
        encryption key changed)."""
        from cryptography.fernet import InvalidToken

        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(personal_keys).where(personal_keys.c.user_identifier == user))).first()
        if row is None:
            return None
        try:
            key = self._cipher.decrypt(row.encrypted.encode()).decode()  # type: ignore[attr-defined]
        except InvalidToken:
            import logging

            logging.getLogger(__name__).error(
                "the provider key of %s cannot be decrypted (CHORUS_SECRET_KEY or %s changed?); they must enter it "
                "again", user, SECRET_FILE)
            return None
        hide(key)  # from now on, masked in every log line of this process
        return PersonalKey(model=row.model, hint=row.hint, key=key)

    async def delete(self, user: str) -> bool:
        async with self.engine.begin() as conn:
            gone = await conn.execute(sa.delete(personal_keys).where(personal_keys.c.user_identifier == user))
        return bool(gone.rowcount)
