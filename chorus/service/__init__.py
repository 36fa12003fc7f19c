"""Chorus as a service: conversations outside the page, for the OpenAI-compatible API
(:mod:`chorus.web.api`) and background runs.

- :mod:`~chorus.service.conversation`: :class:`Conversations` opens a user's conversation with a
  team (a stored thread, or a new one) and runs its turns through ``run_turn``, writing the
  transcript where the page reads it.

Nothing here imports the web layer; Chainlit is used only as the conversation store's format.
"""

from __future__ import annotations

from chorus.service.conversation import Conversation, ConversationError, Conversations, acting_as

__all__ = ["Conversation", "ConversationError", "Conversations", "acting_as"]
