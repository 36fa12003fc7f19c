"""Offline switches (and AutoGen's runtime tracing), applied before litellm, MLflow, Chroma or AutoGen are imported.

Chorus must start with no network: litellm would fetch its cost map at import,
and MLflow and Chroma would phone home with telemetry.  Users who want the
remote behaviour can still set these variables themselves; we only fill in
defaults.
"""

from __future__ import annotations

import os

OFFLINE_DEFAULTS: dict[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "ANONYMIZED_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    # AutoGen opens an OpenTelemetry span for every message inside a team, each streamed chunk
    # included: a large share of a turn's CPU. Chorus traces turns in MLflow instead (chorus.tracing).
    "AUTOGEN_DISABLE_RUNTIME_TRACING": "true",
}


def apply_offline_defaults() -> None:
    """Set every offline switch that the user has not set explicitly."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def apply_cookie_settings() -> None:
    """Chainlit reads its cookie's SameSite once, when it is imported: pass Chorus's setting on.

    ``CHORUS_COOKIE_SAMESITE=none`` (a widget on another site, over HTTPS) makes the cookie
    ``SameSite=None; Secure``.
    """
    value = os.environ.get("CHORUS_COOKIE_SAMESITE", "").strip().lower()
    if value in ("lax", "strict", "none"):
        os.environ.setdefault("CHAINLIT_COOKIE_SAMESITE", value)
