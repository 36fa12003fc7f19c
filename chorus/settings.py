"""All configuration of Chorus: one pydantic-settings class, env prefix ``CHORUS_``."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OFFLINE_MODEL = "offline"
BUILT_IN_GUARDS = ("injection", "prompt_leak", "pii", "reply_cap")
"""Chorus's own guards (chorus/builtin/guards.py), in the order they run."""


class Settings(BaseSettings):
    """Settings read from the environment (and an optional ``.env`` file).

    Every field is documented in the README's configuration table.
    """

    model_config = SettingsConfigDict(env_prefix="CHORUS_", env_file=".env", extra="ignore")

    model: str = Field(
        default=OFFLINE_MODEL,
        description="litellm model string for every agent, or 'offline' for the local model.",
    )
    model_api_base: str | None = Field(default=None, description="Override the provider's API base URL.")
    model_api_key: str | None = Field(default=None, description="The provider's API key (litellm or openai client).")
    model_timeout: float = Field(
        default=120.0, gt=0,
        description="Seconds one request to a provider may take when it is not streamed (embeddings), and the "
                    "most any single wait on a provider may last; streamed replies are bounded by "
                    "CHORUS_MODEL_FIRST_BYTE_TIMEOUT, CHORUS_MODEL_STALL_TIMEOUT and CHORUS_MODEL_DEADLINE.",
    )
    model_first_byte_timeout: float = Field(
        default=20.0, ge=0,
        description="Seconds one attempt waits for a provider to start answering; then it counts as failed: the "
                    "model is skipped for CHORUS_MODEL_COOLDOWN and the next model (or the offline one) answers "
                    "(0 = CHORUS_MODEL_TIMEOUT).",
    )
    model_stall_timeout: float = Field(
        default=15.0, ge=0,
        description="Seconds a reply that has begun may go without a new chunk before it is cut off (the text so "
                    "far is kept, with a notice); never more than CHORUS_MODEL_FIRST_BYTE_TIMEOUT (0 = that).",
    )
    model_deadline: float = Field(
        default=45.0, ge=0,
        description="Most seconds one model call waits for its reply to begin, retries and fallbacks included; "
                    "then the offline model answers (CHORUS_DEGRADE_TO_OFFLINE) or the call fails (0 = no deadline).",
    )
    model_fast_path: bool = Field(
        default=True,
        description="Stream from OpenAI-compatible servers (an 'openai/...' model with CHORUS_MODEL_API_BASE, "
                    "'hosted_vllm/...', 'custom_openai/...') through the official openai client, five times cheaper "
                    "per chunk than litellm's stream wrapper; false = every model through litellm.",
    )
    model_fallbacks: str = Field(
        default="", description="Comma-separated litellm model strings tried, in order, when CHORUS_MODEL fails."
    )
    model_retries: int = Field(
        default=2, description="Retries of a failed model call (with backoff) before falling back."
    )
    model_allowed_fails: int = Field(
        default=3, description="Failures within a minute after which a model is skipped for CHORUS_MODEL_COOLDOWN."
    )
    model_cooldown: float = Field(default=30.0, description="Seconds a failing model is skipped (circuit breaker).")
    degrade_to_offline: bool = Field(
        default=True, description="When every model fails, answer with the offline model and say so (not an error)."
    )
    offline_token_delay: float = Field(
        default=0.012, description="Seconds between streamed chunks of the offline model (0 = instant)."
    )
    plugins: str | None = Field(
        default=None,
        description="Comma-separated allow-list: 'distribution' (all its plugins), 'distribution:entry_point', "
        "or an entry-point name only one distribution provides (ambiguous names load nothing); unset loads all.",
    )
    agents_dir: Path = Field(default=Path("agents"), description="Directory of team YAML files.")
    home: Path = Field(default=Path(".chorus"), description="Data directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database (PostgreSQL at scale); unset = SQLite in the data directory.",
    )
    default_team: str | None = Field(default=None, description="Team used when none is chosen.")
    max_message_chars: int = Field(default=20_000, description="Longest user message accepted.")
    upload_max_mb: float = Field(default=10.0, description="Largest file a user may attach, in MB (0 = no uploads).")
    upload_types: str = Field(
        default="text/*,application/json,application/x-yaml,application/yaml,application/xml,application/pdf",
        description="Comma-separated media types (wildcards allowed) a user may attach.",
    )
    upload_files_per_hour: int = Field(
        default=30, ge=0, description="Most files one user may upload in any hour (0 = no cap)."
    )
    upload_mb_per_hour: float = Field(
        default=50.0, ge=0, description="Most MB one user may upload in any hour (0 = no cap)."
    )
    upload_mb_total: float = Field(
        default=500.0, ge=0, description="Most MB of stored files (kept with conversations) per user (0 = no cap)."
    )
    max_attachment_chars: int = Field(
        default=100_000, description="Most characters of attached files given to the team per message."
    )
    turn_token_budget: int | None = Field(
        default=200_000, ge=0,
        description="Most tokens (prompt + completion, all calls) one turn may use; 0 = no cap.",
    )
    user_daily_cost_budget: float | None = Field(
        default=None, description="Most a user's model calls may cost per day (UTC), in US dollars; unset = no cap."
    )
    tracing: bool = Field(default=True, description="Trace every turn in MLflow; false = off.")
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI (a server URL); unset = SQLite mlflow.db in the data directory."
    )
    trace_flush_timeout: float | None = Field(
        default=None, ge=0,
        description="Seconds a stopping process waits for its last traces to reach MLflow; unset = 15.")
    mlflow_experiment: str = Field(default="chorus", description="MLflow experiment the traces go to.")
    mlflow_ui_url: str = Field(
        default="http://127.0.0.1:5000",
        description="Where the page's trace links lead. Unset: the tracking server (an http tracking URI), else "
                    "where a running `chorus mlflow` serves, else this default.",
    )
    memory: bool = Field(default=True, description="Per-user memory and the knowledge base (Chroma); false = off.")
    embedding: str = Field(
        default="minilm",
        description="Embeddings: 'minilm' (offline), 'litellm:<model>' (a provider's), or a plugin embedder's name.",
    )
    chroma_url: str | None = Field(
        default=None, description="URL of a Chroma server; unset = an embedded store in the data directory."
    )
    knowledge_dir: Path = Field(
        default=Path("knowledge"), description="Documents ingested into the knowledge base on first start."
    )
    guards: str = Field(
        default="",
        description="Built-in guards to turn on, comma-separated: pii (emails, phone and card numbers removed from "
                    "replies and shown tool results), injection (instructions inside tool results are marked as "
                    "data), prompt_leak (a reply that repeats its agent's or a teammate's instructions is withheld), "
                    "reply_cap (replies cut at CHORUS_GUARD_MAX_REPLY_CHARS).",
    )
    guard_max_reply_chars: int = Field(
        default=4000, ge=100, description="The reply_cap guard's longest reply, in characters.")
    approval_timeout: float = Field(
        default=600.0, gt=0, le=7 * 24 * 3600,
        description="Seconds a tool call that needs approval waits for the user's answer; then it counts as a "
                    "denial and the agent is told.")
    personal_keys: bool = Field(
        default=True,
        description="Logged-in users may enter their own provider key and model in the page's settings, used for "
                    "their calls only and stored encrypted; false = not offered.",
    )
    personal_key_api_base: str | None = Field(
        default=None,
        description="Where users' own keys are sent: unset = each provider's own endpoint (never "
                    "CHORUS_MODEL_API_BASE, which may be a gateway that ignores the key and bills the deployment).",
    )
    secret_key: str | None = Field(
        default=None,
        description="What encrypts users' own provider keys at rest (a Fernet key, or any passphrase); unset = one "
                    "generated into the data directory's secret_key file on first use. Changing it makes stored "
                    "keys unreadable (their users enter them again).",
    )
    mcp_servers: Path | None = Field(
        default=None,
        description="A YAML file of MCP servers whose tools every team gets (the same fields as a team file's "
                    "mcp_servers); unset = none beyond the team files' own.",
    )
    allowed_origins: str = Field(
        default="",
        description="Comma-separated origins (https://www.example.com) whose pages may embed the chat widget; "
                    "empty = no widget, and only the page's own origin may call the server.",
    )
    widget_session_minutes: float = Field(
        default=60.0, gt=0,
        description="How long a widget visitor's session lasts after sign-in (or until their token expires, if "
                    "later; at most 24 hours).",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks (127.0.0.1, 10.0.0.0/8) of reverse proxies whose "
                    "X-Forwarded-For, -Proto and -Host headers are believed; empty = nobody's X-Forwarded-Host "
                    "(and uvicorn's default, loopback, for -For and -Proto).",
    )
    cookie_samesite: Literal["lax", "strict", "none"] = Field(
        default="lax",
        description="SameSite of the login cookie: 'none' (with HTTPS) for a widget on another site.",
    )
    api_rate_limit: str = Field(
        default="120/minute",
        description="Requests one API key may make to the OpenAI-compatible API, e.g. '60/minute' or "
                    "'1000/hour;20/second' (several limits with ';'); empty = no limit.",
    )
    run_concurrency: int = Field(
        default=2, ge=0,
        description="Background runs one process executes at once (chorus run, chorus worker); 0 = this process "
                    "only accepts runs and leaves them to `chorus worker` processes.",
    )
    run_global_concurrency: int = Field(
        default=0, ge=0, description="Background runs executing at once across every process; 0 = no global limit.",
    )
    run_webhook_hosts: str = Field(
        default="",
        description="Comma-separated hosts (hooks.example.com, *.example.com) a run's webhook may call; empty = "
                    "webhooks are refused.",
    )
    worker_dead_after: float = Field(
        default=15.0, gt=0,
        description="Seconds without a heartbeat after which a process executing runs counts as dead, and "
                    "another takes its runs over (one on the same machine whose process is gone at once).",
    )
    rate_limits: str = Field(
        default="",
        description="Messages each user (or visitor, by address) may send, in the limits notation: '10/minute' or "
                    "'100/hour;10/minute'; empty = no limit. Page, widget, API and background runs count together.",
    )
    upload_rate_limits: str = Field(
        default="",
        description="Uploads each user (or visitor, by address) may make, e.g. '30/hour'; empty = no limit.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis (redis://host:6379/0) where rate-limit counts are shared by every worker; unset = each "
                    "process counts its own.",
    )
    pseudonymous_ids: bool = Field(
        default=False,
        description="Replace user ids in traces and trace feedback with a keyed hash (u-...), so that "
                    "observability data can be shared without names.",
    )
    pseudonym_key: str | None = Field(
        default=None,
        description="The key of that hash; unset = one made once in CHORUS_HOME/pseudonym_key. The same key gives "
                    "the same pseudonym everywhere.",
    )
    metrics_token: str | None = Field(
        default=None,
        description="Bearer token that GET /metrics requires; unset = /metrics answers this machine (loopback) only.",
    )
    api_max_body_kb: float = Field(default=1024.0, gt=0, description="Largest API request body, in KB.")
    api_agent_names: Literal["field", "prefix"] = Field(
        default="field",
        description="How API replies name the speaking agent: 'field' (each chunk's 'agent' field only) or "
                    "'prefix' (also '**agent:** ' in the text, for clients that show only the text); a request's "
                    "'agent_names' overrides it.",
    )
    forbid_real_models: bool = Field(
        default=False,
        description="Refuse every model request that would leave this machine (set by the tests).",
    )

    @field_validator("model")
    @classmethod
    def _strip_model(cls, value: str) -> str:
        value = value.strip()
        return value or OFFLINE_MODEL

    def fallback_models(self) -> list[str]:
        return [m.strip() for m in self.model_fallbacks.split(",") if m.strip()]

    def upload_type_list(self) -> list[str]:
        return [t.strip().lower() for t in self.upload_types.split(",") if t.strip()]

    def allowed_origin_list(self) -> list[str]:
        """``allowed_origins`` as normalised origins; ValueError names a malformed one."""
        return parse_origins(self.allowed_origins)

    @property
    def run_webhook_host_list(self) -> list[str]:
        return [h.strip() for h in self.run_webhook_hosts.split(",") if h.strip()]

    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """``trusted_proxies`` as networks; ValueError names a malformed entry."""
        networks = []
        for item in self.trusted_proxies.split(","):
            if item.strip():
                try:
                    networks.append(ipaddress.ip_network(item.strip(), strict=False))
                except ValueError:
                    raise ValueError(f"CHORUS_TRUSTED_PROXIES: {item.strip()!r} is not an address or network") from None
        return networks

    @field_validator("guards")
    @classmethod
    def _known_guards(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in BUILT_IN_GUARDS]
        if unknown:
            raise ValueError(f"CHORUS_GUARDS: unknown guard {', '.join(map(repr, unknown))} "
                             f"(the built-in guards are {', '.join(BUILT_IN_GUARDS)})")
        return ",".join(names)

    def guard_names(self) -> list[str]:
        """The built-in guards ``CHORUS_GUARDS`` turns on, in the order they run."""
        chosen = {n for n in self.guards.split(",") if n}
        return [n for n in BUILT_IN_GUARDS if n in chosen]

    def plugin_allow_list(self) -> set[str] | None:
        """The normalised allow-list (``name`` or ``distribution:entry_point``), or None when every
        plugin is allowed."""
        if self.plugins is None or not self.plugins.strip():
            return None
        entries = (p for p in self.plugins.split(",") if p.strip())
        return {":".join(normalise_name(part) for part in entry.split(":", 1)) for entry in entries}


def normalise_name(name: str) -> str:
    """Compare plugin and distribution names the way pip does (case, '-', '_', '.')."""
    return name.strip().lower().replace("_", "-").replace(".", "-")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a path or a trailing slash."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{origin!r} is not an origin like https://www.example.com")
    return f"{parts.scheme}://{parts.netloc}".lower()


def parse_origins(value: str | None) -> list[str]:
    """``CHORUS_ALLOWED_ORIGINS`` (comma-separated) as normalised origins; ValueError for a bad one."""
    return [normalise_origin(item) for item in (value or "").split(",") if item.strip()]
