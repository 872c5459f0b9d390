"""The one frozen Settings object: every setting's environment variable, type and default, once.

A field's environment variable is its name in capitals unless its alias says otherwise
(`stale_after` is RUN_STALE_AFTER). What is code stays code: the provider chain built from the
OpenRouter/Cerebras presets and LLM_PRIMARY_*/LLM_FALLBACK_*, the E2B_TEMPLATE_<FRAMEWORK>
pairs, and the defaults that follow DATA_DIR and PORT (`Settings.from_env`).

Only `from_env` reads an environment, and only the mapping it is handed: `Settings(...)` built by
hand reads nothing (so the tests' settings never pick up the machine's). `environ()` is the
process environment, for the edges that hand it over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AliasGenerator,
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from models.tables import Framework
from orchestrator.errors import ConfigError

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
OPENROUTER_DEFAULT_MODEL = "moonshotai/kimi-k2.5"
CEREBRAS_BASE_URL = "https://api.cerebras.ai/v1"
CEREBRAS_DEFAULT_MODEL = "zai-glm-4.7"
SANDBOX_ISOLATIONS = ("required", "best-effort")
PREVIEW_CHECKS = ("chromium", "off")
E2B_TEMPLATE_PREFIX = "E2B_TEMPLATE_"
# Where the environment's default differs from a Settings built by hand (which checks nothing
# and serves no worker metrics): DESIGN sections 16 and 11.
ENVIRONMENT_DEFAULTS = {"PREVIEW_CHECK": "chromium", "WORKER_METRICS_PORT": "9540"}
# An empty value means "unset", except here: IMPORT_ALLOWED_HOSTS= allows no host at all.
EMPTY_MEANS_EMPTY = ("IMPORT_ALLOWED_HOSTS",)


def environ() -> MutableMapping[str, str]:
    """The process environment, for the edges (the CLI, the Celery app, the web app factory)."""
    return os.environ


def env_data_dir(env: Mapping[str, str]) -> Path:
    """DATA_DIR: this machine's own state (the SQLite file, the bundled Redis, sandboxes...)."""
    return Path(env.get("DATA_DIR", ".data"))


@dataclass(frozen=True)
class ProviderConfig:
    """One OpenAI-compatible endpoint of the provider chain."""

    name: str
    base_url: str
    api_key: str
    model: str
    # DESIGN section 17: the model's context window, in tokens (LLM_<SLOT>_CONTEXT_TOKENS).
    context_tokens: int = 128000


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir.resolve() / 'app.db'}"


def normalize_database_url(url: str) -> str:
    """Let operators write a plain postgresql:// URL; the app picks the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, str) else value


def _whole(value: Any) -> Any:
    """As before pydantic: "2.5" is 2, whatever reads a count from the environment."""
    return int(float(value)) if isinstance(value, str) else value


def _port_or_none(value: Any) -> Any:
    return _whole(value) or None


def _one_of(allowed: tuple[str, ...], *, lower: bool = True) -> BeforeValidator:
    def check(value: Any, info: ValidationInfo) -> Any:
        chosen = value.lower() if lower and isinstance(value, str) else value
        if chosen not in allowed:
            said = " or ".join(f"'{a}'" for a in allowed)
            raise ConfigError(f"{str(info.field_name).upper()} must be {said}, got {chosen!r}")
        return chosen

    return BeforeValidator(check)


def _log_format(value: Any) -> Any:
    chosen = value.lower() if isinstance(value, str) else value
    if chosen not in ("json", "text"):
        raise ConfigError(f"LOG_FORMAT must be 'json' or 'text', got {value!r}")
    return chosen


def _flag(value: Any) -> Any:
    return value.lower() in ("1", "true", "yes", "on") if isinstance(value, str) else value


def _comma_list(value: Any) -> Any:
    return (
        tuple(filter(None, map(str.strip, value.split(",")))) if isinstance(value, str) else value
    )


def _templates(value: Any) -> Any:
    return None if isinstance(value, str) and value.lower() in ("off", "none") else value


def _allowed_hosts(value: Any) -> Any:
    return allowed_hosts(value) if isinstance(value, str) else value


Number = Annotated[float, BeforeValidator(_number)]
Whole = Annotated[int, BeforeValidator(_whole)]
Names = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]
# Built in code (from_env), never read from one variable.
FROM_CODE = {"providers", "e2b_templates"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=True,
        populate_by_name=True,
        alias_generator=AliasGenerator(validation_alias=str.upper),
    )

    database_url: str = "sqlite:///./.data/app.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # No default: the web app refuses to start without a secret or a JWKS URL (DESIGN section 15);
    # `orchestrator dev` passes a random one it keeps under the data directory.
    auth_secret: str | None = None
    auth_jwks_url: str | None = None
    # At most one JWKS fetch per this many seconds, however many unknown `kid`s arrive.
    jwks_refetch_interval: Number = 30.0
    default_credits: Whole = 5
    # Built from the presets and LLM_PRIMARY_*/LLM_FALLBACK_* (providers_from_env).
    providers: tuple[ProviderConfig, ...] = ()
    llm_read_timeout: Number = 60.0
    llm_connect_timeout: Number = 10.0
    # DESIGN section 17: the most a reply may take (sent as `max_tokens`), kept free of the prompt.
    llm_max_output_tokens: Whole = 8192
    # Retries per provider, and the backoff caps of DESIGN section 7.
    llm_attempts_per_provider: Whole = 3
    llm_backoff_cap: Number = 8.0
    llm_retry_after_cap: Number = 30.0
    agent_max_steps: Whole = 25
    sandbox: Annotated[str, _one_of(("local", "e2b"))] = "local"
    # DESIGN section 15: "required" refuses to run local commands without bubblewrap.
    sandbox_isolation: Annotated[str, _one_of(SANDBOX_ISOLATIONS, lower=False)] = "required"
    # DATA_DIR: this machine's own state (the SQLite file, the bundled Redis, sandboxes, templates).
    data_dir: str = ".data"
    # SANDBOX_ROOT: the local sandbox's workspaces. Left at its default under DATA_DIR, a worker
    # running as root moves it where sandbox users can reach it (sandboxes/places.py).
    sandbox_root: str = "./.data/sandboxes"
    # Where `orchestrator sandbox prepare` installs the framework templates the local sandbox
    # builds apps from (SANDBOX_TEMPLATES, default $DATA_DIR/templates). None ("off"): no
    # templates, the local sandbox serves plain static files whatever the framework.
    sandbox_templates: Annotated[str | None, BeforeValidator(_templates)] = None
    e2b_api_key: str | None = None
    # Only to point the SDK somewhere else (a self-hosted E2B, or the offline fake in tests).
    e2b_api_url: str | None = None
    e2b_sandbox_url: str | None = None
    e2b_domain: str | None = None
    # (framework, template name) pairs from E2B_TEMPLATE_<FRAMEWORK>: the deployment's own
    # templates; a framework left out gets the name in its sandbox-templates/ e2b.toml.
    e2b_templates: tuple[tuple[str, str], ...] = ()
    # From the environment the default is http://127.0.0.1:$PORT.
    public_url: str = "http://127.0.0.1:5000"
    port: Whole = 5000
    queue_name: str = "generation"
    # DESIGN section 14: the runs one worker process holds (the Procfile's --concurrency).
    worker_concurrency: Whole = 100
    # Content is flushed to the database at least this often while tokens arrive.
    flush_interval: Number = 0.25
    # Heartbeat and the reaper's thresholds (DESIGN section 9).
    heartbeat_interval: Number = 5.0
    stale_after: Number = Field(30.0, alias="RUN_STALE_AFTER")
    pending_grace: Number = Field(120.0, alias="RUN_PENDING_GRACE")
    max_run_attempts: Whole = Field(3, alias="RUN_MAX_ATTEMPTS")
    # A run no worker claimed is re-sent once per pending_grace, this many times, then FAILED.
    max_resends: Whole = Field(10, alias="RUN_MAX_RESENDS")
    # Kept well under the broker's visibility timeout so a slow run is never delivered twice.
    run_deadline: Number = 900.0
    event_stream_ttl: Whole = 3600
    event_stream_maxlen: Whole = 10000
    # Seconds between `: ping` comments on an idle event stream (DESIGN section 6: at most 15).
    sse_ping_interval: Number = 15.0
    idempotency_ttl_hours: Whole = 24
    rate_limit_per_minute: Whole = 0
    # Runs PENDING/STREAMING per user across conversations; 0 = no cap.
    max_runs_per_user: Whole = 0
    max_body_bytes: Whole = 1024 * 1024
    # The shared circuit breaker per provider (providers/breaker.py); 0 failures = no breaker.
    breaker_failures: Whole = 5
    breaker_window: Number = 60.0
    breaker_cooldown: Number = 30.0
    # "json" (one object per line, with request/user/message/run ids) or "text".
    log_format: Annotated[str, BeforeValidator(_log_format)] = "text"
    # The Celery worker's logging level (workers/celery_app.py).
    log_level: str = "INFO"
    # Celery task events: what Flower needs to show tasks; off by default.
    task_events: Annotated[bool, BeforeValidator(_flag)] = Field(False, alias="CELERY_TASK_EVENTS")
    # The worker machine's /metrics port (DESIGN section 11); None or 0: no endpoint.
    worker_metrics_port: Annotated[int | None, BeforeValidator(_port_or_none)] = None
    # Origins whose front ends may call /api/* (DESIGN section 13), comma-separated; none.
    cors_origins: Names = ()
    # DESIGN section 16: "chromium" checks every version (build, render) before it is saved;
    # "off" saves it unchecked (ENVIRONMENT_DEFAULTS: a worker with no Chromium says so at
    # start and skips the checks; built by hand, Settings() checks nothing).
    preview_check: Annotated[str, _one_of(PREVIEW_CHECKS)] = "off"
    # Repair rounds: how many times a failed check goes back to the model.
    check_max_rounds: Whole = 3
    # Browser checks one worker process runs at once; the rest wait their turn.
    check_concurrency: Whole = 2
    # Where imports and pushes may go (DESIGN section 18): host names (https, public addresses)
    # or exact origins with scheme and port (an operator's own Git server); comma-separated.
    import_allowed_hosts: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_allowed_hosts)] = (
        "github.com",
        "gitlab.com",
        "bitbucket.org",
    )
    # Seconds one clone or push may take, and the most a repository may hold.
    import_timeout: Number = 120.0
    import_max_mb: Whole = 256

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.sandbox == "e2b" and not self.e2b_api_key:
            raise ConfigError("SANDBOX=e2b needs E2B_API_KEY")
        if self.llm_max_output_tokens < 1:
            raise ConfigError(
                f"LLM_MAX_OUTPUT_TOKENS must be a positive number, got {self.llm_max_output_tokens}"
            )
        if self.check_max_rounds < 0 or self.check_concurrency < 1:
            raise ConfigError("CHECK_MAX_ROUNDS must be 0 or more and CHECK_CONCURRENCY 1 or more")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what the caller passes: from_env hands its mapping over, nothing else is read."""
        return (init_settings,)

    @property
    def demo_mode(self) -> bool:
        return not self.providers

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, data_dir: Path | None = None) -> Settings:
        """The settings `env` gives, read as pydantic-settings reads os.environ, plus the code."""
        home = data_dir or env_data_dir(env)
        given = {k: v for k, v in env.items() if v != "" or k in EMPTY_MEANS_EMPTY}
        values = _EnvMapping(
            cls,
            {
                **ENVIRONMENT_DEFAULTS,
                "DATABASE_URL": default_database_url(home),
                "SANDBOX_ROOT": str(home / "sandboxes"),
                "SANDBOX_TEMPLATES": str(home / "templates"),
                **given,
                "DATA_DIR": str(home),
            },
        )()
        try:
            settings = cls(**values)
        except ValidationError as exc:  # text that parses as no number (the rest is ConfigError)
            error = exc.errors()[0]
            raise ConfigError(
                f"{error['loc'][0]} must be a number, got {error['input']!r}"
            ) from exc
        return settings.model_copy(
            update={
                "database_url": normalize_database_url(settings.database_url),
                "public_url": (
                    given.get("PUBLIC_URL") or f"http://127.0.0.1:{settings.port}"
                ).rstrip("/"),
                "providers": providers_from_env(
                    env, max_output_tokens=settings.llm_max_output_tokens
                ),
                "e2b_templates": e2b_templates_from_env(env),
            }
        )


class _EnvMapping(EnvSettingsSource):
    """pydantic-settings' reading of environment variables, over a given mapping."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._given

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in FROM_CODE:
            return None, field_name, False
        return super().get_field_value(field, field_name)


def e2b_templates_from_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """E2B_TEMPLATE_REACT=team-react and the like, one per framework; empty means the default."""
    known = {framework.value for framework in Framework}
    chosen: list[tuple[str, str]] = []
    for name, value in sorted(env.items()):
        if not name.startswith(E2B_TEMPLATE_PREFIX) or not value:
            continue
        framework = name.removeprefix(E2B_TEMPLATE_PREFIX)
        if framework not in known:
            raise ConfigError(
                f"{name} names no framework: use one of "
                + ", ".join(E2B_TEMPLATE_PREFIX + k for k in sorted(known))
            )
        chosen.append((framework, value))
    return tuple(chosen)


def allowed_hosts(raw: str | None) -> tuple[str, ...]:
    """IMPORT_ALLOWED_HOSTS: comma-separated; unset means the three public Git hosts."""
    from orchestrator.git.remotes import DEFAULT_ALLOWED_HOSTS, parse_allowed

    if raw is None:
        return DEFAULT_ALLOWED_HOSTS
    entries = tuple(filter(None, map(str.strip, raw.split(","))))
    try:
        parse_allowed(entries)
    except ValueError as exc:
        raise ConfigError(f"IMPORT_ALLOWED_HOSTS: {exc}") from exc
    return entries


def providers_from_env(
    env: Mapping[str, str], *, max_output_tokens: int = 8192
) -> tuple[ProviderConfig, ...]:
    """The ordered chain: explicit LLM_* variables win over the OpenRouter/Cerebras presets."""
    chain: list[ProviderConfig] = []
    for slot, preset_key, preset_url, preset_model in (
        ("PRIMARY", "OPENROUTER_API_KEY", OPENROUTER_BASE_URL, OPENROUTER_DEFAULT_MODEL),
        ("FALLBACK", "CEREBRAS_API_KEY", CEREBRAS_BASE_URL, CEREBRAS_DEFAULT_MODEL),
    ):
        preset = env.get(preset_key)
        base_url = env.get(f"LLM_{slot}_BASE_URL") or (preset_url if preset else None)
        api_key = env.get(f"LLM_{slot}_API_KEY") or preset
        model = env.get(f"LLM_{slot}_MODEL") or (preset_model if preset else None)
        if not base_url and not api_key:
            continue
        if not base_url or not model:
            raise ConfigError(f"LLM_{slot}_BASE_URL and LLM_{slot}_MODEL must both be set")
        chain.append(
            ProviderConfig(
                name=slot.lower(),
                base_url=base_url,
                api_key=api_key or "none",
                model=model,
                context_tokens=context_tokens(env, slot, max_output_tokens),
            )
        )
    return tuple(chain)


def context_tokens(env: Mapping[str, str], slot: str, max_output_tokens: int) -> int:
    """LLM_<SLOT>_CONTEXT_TOKENS: a whole number with room for the prompt beside the reply."""
    name = f"LLM_{slot}_CONTEXT_TOKENS"
    raw = env.get(name) or str(ProviderConfig.context_tokens)
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number of tokens, got {raw!r}") from exc
    if value <= max_output_tokens:
        raise ConfigError(
            f"{name} ({value}) must be larger than LLM_MAX_OUTPUT_TOKENS ({max_output_tokens}):"
            " the prompt needs room beside the reply"
        )
    return value
