"""Model clients: litellm for real providers, and local models (offline, scripted, your own)."""

from __future__ import annotations

from chorus.models._handoff import HANDOFF_PREFIX
from chorus.models.client import (
    CallRecord,
    ChorusModelClient,
    ModelError,
    ModelRequestRefused,
    ModelStalled,
    validate_model,
)
from chorus.models.local import (
    LocalModel,
    ModelHints,
    ModelReply,
    ModelRequest,
    ToolCall,
    is_local_model,
    local_model,
    register_local_model,
    unregister_local_model,
)
from chorus.models.offline import OFFLINE_NOTICE, OfflineModel
from chorus.models.scripted import ScriptedModel, ScriptExhausted, scripted_model, tool_call

__all__ = [
    "HANDOFF_PREFIX",
    "OFFLINE_NOTICE",
    "CallRecord",
    "ChorusModelClient",
    "LocalModel",
    "ModelError",
    "ModelHints",
    "ModelReply",
    "ModelRequest",
    "ModelRequestRefused",
    "ModelStalled",
    "OfflineModel",
    "ScriptExhausted",
    "ScriptedModel",
    "ToolCall",
    "is_local_model",
    "local_model",
    "register_local_model",
    "scripted_model",
    "tool_call",
    "unregister_local_model",
    "validate_model",
]
