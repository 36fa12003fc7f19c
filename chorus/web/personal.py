"""A user's own provider key on the page (README, "Your own provider key"): the settings panel's
fields, what happens when they are saved, and the key loaded before a chat's session is built.

The key is typed into the page's settings (Chainlit's chat settings), encrypted into the store
(:mod:`chorus.store.personal_keys`) and taken out of Chainlit's copy of the settings before
anything can persist it (Chainlit keeps chat settings in the thread's metadata). The panel
shows only its last four characters."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import chainlit as cl
from chainlit.input_widget import Switch, TextInput

from chorus.models import validate_model
from chorus.store.personal_keys import PersonalKey, PersonalKeys, check_model
from chorus.turn import ChatSession, ChorusError
from chorus.web import audit
from chorus.web.context import SYSTEM, current
from chorus.widget import is_widget_identity

log = logging.getLogger(__name__)

KEY_FIELD, MODEL_FIELD, FORGET_FIELD = "provider_key", "provider_model", "forget_provider_key"
BUSY_WAIT_S = 30.0
"""How long a key change waits for the chat's running turn to end before it is refused."""


def _owner() -> str | None:
    """The logged-in (page) user who may keep a key, else None."""
    web = current()
    if not web.history or not web.chorus.settings.personal_keys:
        return None
    user = cl.user_session.get("user")
    identifier = str(getattr(user, "identifier", "") or "")
    return identifier if identifier and not is_widget_identity(identifier) else None


def _store() -> PersonalKeys | None:
    web = current()
    return web.chorus.personal_keys(web.engine())


async def load() -> None:
    """The user's stored key, for the session about to be built (``personal_key`` in the chat)."""
    owner, store = _owner(), _store()
    found: PersonalKey | None = None
    if owner is not None and store is not None:
        try:
            found = await store.get(owner)
        except Exception as exc:  # the store is down: the deployment's key answers, as before
            log.error("could not read %s's own provider key: %s", owner, exc)
    cl.user_session.set("personal_key", found)


def loaded() -> PersonalKey | None:
    found = cl.user_session.get("personal_key")
    return found if isinstance(found, PersonalKey) else None


async def offer() -> None:
    """The settings panel's fields (the key never sent back: only its last four characters)."""
    if _owner() is None:
        return
    key = loaded()
    await cl.ChatSettings([
        TextInput(id=KEY_FIELD, label="Your provider API key", initial="",
                  placeholder=f"saved: {key.masked} (type a new one to replace it)" if key else "sk-...",
                  description="Used only for your own messages, stored encrypted; leave empty to keep it."),
        TextInput(id=MODEL_FIELD, label="Model for your key (litellm)", initial=key.model if key else "",
                  placeholder="openai/gpt-4o-mini"),
        Switch(id=FORGET_FIELD, label="Delete my key", initial=False),
    ]).send()


def register() -> None:
    """The settings handler, called at once by Chainlit's socket event (not as a task: nothing may
    be awaited before the key is out of Chainlit's copy of the settings)."""
    from chainlit.config import config
    from chainlit.utils import wrap_user_function

    config.code.on_settings_update = wrap_user_function(on_settings_update, with_task=False)


async def on_settings_update(values: dict[str, Any]) -> None:
    """Save, replace or delete the user's key, and use it from their next message."""
    typed = str(values.get(KEY_FIELD) or "").strip()
    model = str(values.get(MODEL_FIELD) or "").strip()
    forget = bool(values.get(FORGET_FIELD))
    # Chainlit keeps the settings in the session, and writes them into the thread's metadata: not the key.
    kept = cl.context.session.chat_settings
    kept.pop(KEY_FIELD, None)
    kept[FORGET_FIELD] = False
    values.pop(KEY_FIELD, None)
    owner, store = _owner(), _store()
    if owner is None or store is None:
        if typed or forget:
            await cl.Message(content="Your own provider key needs a login on this server.", author=SYSTEM).send()
        return
    previous = loaded()
    session = cl.user_session.get("chorus")
    if isinstance(session, ChatSession) and (typed or forget or model):
        for _ in range(int(BUSY_WAIT_S / 0.1)):  # a turn winding down: wait for it (briefly)
            if not session.busy:
                break
            await asyncio.sleep(0.1)
        else:
            await cl.ErrorMessage(content="The team is answering: change your key once it has finished (nothing "
                                          "was changed).", author=SYSTEM).send()
            return
    try:
        if forget:
            await store.delete(owner)
            chosen = None
            said = "Your key was deleted. Your messages go to this server's model again."
        elif typed or (previous is not None and model and model != previous.model):
            problem = (check_model(model) or validate_model(model)) if model else "say which model your key is for"
            if problem:
                await cl.ErrorMessage(content=f"Your key was not saved: {problem}.", author=SYSTEM).send()
                return
            chosen = await store.set(owner, typed or (previous.key if previous else ""), model)
            said = (f"Your key {chosen.masked} is saved, encrypted. Your messages now go to `{chosen.model}` "
                    "with it: only your own calls use it, and the cost ledger marks them as paid by you.")
        else:
            return
    except ValueError as exc:
        await cl.ErrorMessage(content=f"Your key was not saved: {exc}.", author=SYSTEM).send()
        return
    cl.user_session.set("personal_key", chosen)
    if isinstance(session, ChatSession):
        try:
            await session.use_key(chosen)
        except ChorusError as exc:
            await cl.ErrorMessage(content=f"{exc}", author=SYSTEM).send()
            return
    await audit.note("personal_key_deleted" if chosen is None else "personal_key_saved", owner,
                     {} if chosen is None else {"model": chosen.model, "key": chosen.masked})
    await cl.Message(content=said, author=SYSTEM).send()
    await offer()
