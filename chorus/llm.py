"""litellm, and the guard that keeps tests from reaching a real provider.

Every request Chorus makes to a model provider (chat, in :mod:`chorus.models`; embeddings, in
:mod:`chorus.memory.embeddings`) imports litellm through :func:`litellm` and, with
``CHORUS_FORBID_REAL_MODELS`` set, checks :func:`refuse_real_request` first. This module is the
lowest of the service layer: it imports nothing of Chorus, so models and memory can both use it.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlparse


class ModelError(RuntimeError):
    """A model call failed in a way the user should be told about."""


class ModelRequestRefused(ModelError):
    """A request to a real provider while ``CHORUS_FORBID_REAL_MODELS`` is set."""


def litellm() -> Any:
    """litellm, imported on first use (it takes seconds) and told not to print to stdout."""
    import litellm as module

    module.suppress_debug_info = True
    return module


def refuse_real_request(model: str, api_base: str | None, what: str = "model") -> None:
    """Raise ModelRequestRefused unless ``api_base`` is on this machine (CHORUS_FORBID_REAL_MODELS)."""
    if not is_loopback(api_base):
        raise ModelRequestRefused(
            f"refusing a real {what} request to {model!r}: CHORUS_FORBID_REAL_MODELS is set "
            "(tests must use the offline or scripted model, or a loopback api_base)"
        )


def is_loopback(url: str | None) -> bool:
    """Whether ``url`` points at this machine (localhost or a loopback address)."""
    if not url:
        return False
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
