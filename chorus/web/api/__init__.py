"""The HTTP API next to the page (README, "API"): OpenAI's chat-completions protocol on Chorus's teams.

- :mod:`~chorus.web.api.routes`: ``GET /v1/models``, ``POST /v1/chat/completions``;
- :mod:`~chorus.web.api.chat`: a request's messages as the team's task, and a turn's events as
  OpenAI's completion and chunk shapes (each chunk names its agent);
- :mod:`~chorus.web.api.access`: API keys, the per-key rate limit, the body's size;
- :mod:`~chorus.web.api.errors`: errors in OpenAI's shape.
"""
