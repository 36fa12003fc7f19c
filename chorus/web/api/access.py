"""Who may call the API and how often: the bearer key (:mod:`chorus.store.keys`), a per-key rate
limit and the user's message limit (:mod:`chorus.web.limiter`), and the size of a request's body."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from chorus.settings import Settings
from chorus.store.keys import ApiKey, KeyRefused, check_key
from chorus.web.api.errors import ApiError
from chorus.web.limiter import limiter

log = logging.getLogger("chorus.api")

NO_KEY = ("Give an API key as 'Authorization: Bearer chorus-...'. An operator makes one with "
          "`chorus keys create --user NAME`.")


class Access:
    """The API's door: one per server process."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.engine = engine
        self.max_body = int(settings.api_max_body_kb * 1024)
        self.settings = settings
        limiter(settings)  # a malformed limit is refused when the server starts, not at the first request

    async def key(self, request: Request) -> ApiKey:
        """The request's key, checked and counted against its rate limit; ApiError 401 or 429."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, NO_KEY, code="missing_api_key")
        try:
            key = await check_key(self.engine, value.strip())
        except KeyRefused as exc:
            raise ApiError(401, str(exc), code="invalid_api_key") from None
        refusal = await limiter(self.settings).hit("api", key.id)
        if refusal is not None:
            raise ApiError(429, f"Rate limit reached for this key: {refusal.limit}. Try again in "
                                f"{refusal.retry_after} s.", code="rate_limit_exceeded",
                           headers={"Retry-After": str(refusal.retry_after)})
        return key

    async def message(self, key: ApiKey) -> None:
        """Count a message of the key's user against CHORUS_RATE_LIMITS (shared with the page); ApiError 429."""
        refusal = await limiter(self.settings).hit("messages", key.user)
        if refusal is not None:
            raise ApiError(429, refusal.message("messages"), code="rate_limit_exceeded",
                           headers={"Retry-After": str(refusal.retry_after)})

    async def body(self, request: Request) -> dict[str, Any]:
        """The request's JSON object, read up to the size limit; ApiError 413, 415 or 400."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise ApiError(413, f"The request body is {int(length):,} bytes; the limit is {self.max_body:,} "
                                "(CHORUS_API_MAX_BODY_KB).", code="request_too_large")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > self.max_body:
                raise ApiError(413, f"The request body is over the limit of {self.max_body:,} bytes "
                                    "(CHORUS_API_MAX_BODY_KB).", code="request_too_large")
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if kind not in ("application/json", ""):
            raise ApiError(415, f"Send the body as application/json, not {kind}.", code="unsupported_media_type")
        try:
            body = json.loads(bytes(data) or b"null")
        except ValueError as exc:
            raise ApiError(400, f"The body is not valid JSON: {exc}.", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The body must be a JSON object.", code="invalid_json")
        return body
