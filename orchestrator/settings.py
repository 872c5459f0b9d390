"""The one frozen Settings object, read from the environment at the edges only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from models.tables import Framework
from orchestrator.errors import ConfigError

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
OPENROUTER_DEFAULT_MODEL = "moonshotai/kimi-k2.5"
CEREBRAS_BASE_URL = "https://api.cerebras.ai/v1"
CEREBRAS_DEFAULT_MODEL = "zai-glm-4.7"
SANDBOX_ISOLATIONS = ("required", "best-effort")
PREVIEW_CHECKS = ("chromium", "off")
E2B_TEMPLATE_PREFIX = "E2B_TEMPLATE_"


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


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./.data/app.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # No default: the web app refuses to start without a secret or a JWKS URL (DESIGN section 15);
    # `orchestrator dev` passes a random one it keeps under the data directory.
    auth_secret: str | None = None
    auth_jwks_url: str | None = None
    # At most one JWKS fetch per this many seconds, however many unknown `kid`s arrive.
    jwks_refetch_interval: float = 30.0
    default_credits: int = 5
    providers: tuple[ProviderConfig, ...] = ()
    llm_read_timeout: float = 60.0
    llm_connect_timeout: float = 10.0
    # DESIGN section 17: the most a reply may take (sent as `max_tokens`), kept free of the prompt.
    llm_max_output_tokens: int = 8192
    # Retries per provider, and the backoff caps of DESIGN section 7.
    llm_attempts_per_provider: int = 3
    llm_backoff_cap: float = 8.0
    llm_retry_after_cap: float = 30.0
    agent_max_steps: int = 25
    sandbox: str = "local"
    # DESIGN section 15: "required" refuses to run local commands without bubblewrap.
    sandbox_isolation: str = "required"
    # DATA_DIR: this machine's own state (the SQLite file, the bundled Redis, sandboxes, templates).
    data_dir: str = ".data"
    # SANDBOX_ROOT: the local sandbox's workspaces. Left at its default under DATA_DIR, a worker
    # running as root moves it where sandbox users can reach it (sandboxes/places.py).
    sandbox_root: str = "./.data/sandboxes"
    # Where `orchestrator sandbox prepare` installs the framework templates the local sandbox
    # builds apps from (SANDBOX_TEMPLATES, default $DATA_DIR/templates). None ("off"): no
    # templates, the local sandbox serves plain static files whatever the framework.
    sandbox_templates: str | None = None
    e2b_api_key: str | None = None
    # Only to point the SDK somewhere else (a self-hosted E2B, or the offline fake in tests).
    e2b_api_url: str | None = None
    e2b_sandbox_url: str | None = None
    e2b_domain: str | None = None
    # (framework, template name) pairs from E2B_TEMPLATE_<FRAMEWORK>: the deployment's own
    # templates; a framework left out gets the name in its sandbox-templates/ e2b.toml.
    e2b_templates: tuple[tuple[str, str], ...] = ()
    public_url: str = "http://127.0.0.1:5000"
    port: int = 5000
    queue_name: str = "generation"
    # DESIGN section 14: the runs one worker process holds (the Procfile's --concurrency).
    worker_concurrency: int = 100
    # Content is flushed to the database at least this often while tokens arrive.
    flush_interval: float = 0.25
    # Heartbeat and the reaper's thresholds (DESIGN section 9).
    heartbeat_interval: float = 5.0
    stale_after: float = 30.0
    pending_grace: float = 120.0
    max_run_attempts: int = 3
    # A run no worker claimed is re-sent once per pending_grace, this many times, then FAILED.
    max_resends: int = 10
    # Kept well under the broker's visibility timeout so a slow run is never delivered twice.
    run_deadline: float = 900.0
    event_stream_ttl: int = 3600
    event_stream_maxlen: int = 10000
    # Seconds between `: ping` comments on an idle event stream (DESIGN section 6: at most 15).
    sse_ping_interval: float = 15.0
    idempotency_ttl_hours: int = 24
    rate_limit_per_minute: int = 0
    # Runs PENDING/STREAMING per user across conversations; 0 = no cap.
    max_runs_per_user: int = 0
    max_body_bytes: int = 1024 * 1024
    # The shared circuit breaker per provider (providers/breaker.py); 0 failures = no breaker.
    breaker_failures: int = 5
    breaker_window: float = 60.0
    breaker_cooldown: float = 30.0
    # LOG_FORMAT: "json" (one object per line, with request/user/message/run ids) or "text".
    log_format: str = "text"
    # Celery task events (CELERY_TASK_EVENTS): what Flower needs to show tasks; off by default.
    task_events: bool = False
    # The worker machine's /metrics port (DESIGN section 11); None or 0: no endpoint.
    worker_metrics_port: int | None = None
    # Origins whose front ends may call /api/* (DESIGN section 13); none by default.
    cors_origins: tuple[str, ...] = ()
    # DESIGN section 16: "chromium" checks every version (build, render) before it is saved;
    # "off" saves it unchecked. From the environment the default is "chromium" (a worker with
    # no Chromium says so at start and skips the checks); built by hand, Settings() checks nothing.
    preview_check: str = "off"
    # Repair rounds: how many times a failed check goes back to the model.
    check_max_rounds: int = 3
    # Browser checks one worker process runs at once; the rest wait their turn.
    check_concurrency: int = 2

    @property
    def demo_mode(self) -> bool:
        return not self.providers

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, data_dir: Path | None = None) -> Settings:
        data_dir = data_dir or Path(env.get("DATA_DIR", ".data"))

        def number(name: str, default: float) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return float(raw)
            except ValueError as exc:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from exc

        sandbox = env.get("SANDBOX", "local").lower()
        if sandbox not in ("local", "e2b"):
            raise ConfigError(f"SANDBOX must be 'local' or 'e2b', got {sandbox!r}")
        if sandbox == "e2b" and not env.get("E2B_API_KEY"):
            raise ConfigError("SANDBOX=e2b needs E2B_API_KEY")
        isolation = env.get("SANDBOX_ISOLATION") or cls.sandbox_isolation
        if isolation not in SANDBOX_ISOLATIONS:
            raise ConfigError(
                f"SANDBOX_ISOLATION must be 'required' or 'best-effort', got {isolation!r}"
            )
        port = int(number("PORT", 5000))
        max_output = int(number("LLM_MAX_OUTPUT_TOKENS", cls.llm_max_output_tokens))
        if max_output < 1:
            raise ConfigError(f"LLM_MAX_OUTPUT_TOKENS must be a positive number, got {max_output}")
        preview_check = (env.get("PREVIEW_CHECK") or "chromium").lower()
        if preview_check not in PREVIEW_CHECKS:
            raise ConfigError(f"PREVIEW_CHECK must be 'chromium' or 'off', got {preview_check!r}")
        check_max_rounds = int(number("CHECK_MAX_ROUNDS", cls.check_max_rounds))
        check_concurrency = int(number("CHECK_CONCURRENCY", cls.check_concurrency))
        if check_max_rounds < 0 or check_concurrency < 1:
            raise ConfigError("CHECK_MAX_ROUNDS must be 0 or more and CHECK_CONCURRENCY 1 or more")
        templates = env.get("SANDBOX_TEMPLATES") or str(data_dir / "templates")
        return cls(
            database_url=normalize_database_url(
                env.get("DATABASE_URL") or default_database_url(data_dir)
            ),
            redis_url=env.get("REDIS_URL") or cls.redis_url,
            auth_secret=env.get("AUTH_SECRET") or None,
            auth_jwks_url=env.get("AUTH_JWKS_URL") or None,
            default_credits=int(number("DEFAULT_CREDITS", cls.default_credits)),
            providers=providers_from_env(env, max_output_tokens=max_output),
            llm_max_output_tokens=max_output,
            llm_read_timeout=number("LLM_READ_TIMEOUT", cls.llm_read_timeout),
            agent_max_steps=int(number("AGENT_MAX_STEPS", cls.agent_max_steps)),
            sandbox=sandbox,
            sandbox_isolation=isolation,
            data_dir=str(data_dir),
            sandbox_root=env.get("SANDBOX_ROOT") or str(data_dir / "sandboxes"),
            sandbox_templates=None if templates.lower() in ("off", "none") else templates,
            e2b_api_key=env.get("E2B_API_KEY") or None,
            e2b_api_url=env.get("E2B_API_URL") or None,
            e2b_sandbox_url=env.get("E2B_SANDBOX_URL") or None,
            e2b_domain=env.get("E2B_DOMAIN") or None,
            e2b_templates=e2b_templates_from_env(env),
            public_url=(env.get("PUBLIC_URL") or f"http://127.0.0.1:{port}").rstrip("/"),
            port=port,
            queue_name=env.get("QUEUE_NAME") or cls.queue_name,
            worker_concurrency=int(number("WORKER_CONCURRENCY", cls.worker_concurrency)),
            heartbeat_interval=number("HEARTBEAT_INTERVAL", cls.heartbeat_interval),
            stale_after=number("RUN_STALE_AFTER", cls.stale_after),
            pending_grace=number("RUN_PENDING_GRACE", cls.pending_grace),
            max_run_attempts=int(number("RUN_MAX_ATTEMPTS", cls.max_run_attempts)),
            max_resends=int(number("RUN_MAX_RESENDS", cls.max_resends)),
            rate_limit_per_minute=int(number("RATE_LIMIT_PER_MINUTE", 0)),
            max_runs_per_user=int(number("MAX_RUNS_PER_USER", 0)),
            sse_ping_interval=number("SSE_PING_INTERVAL", cls.sse_ping_interval),
            breaker_failures=int(number("BREAKER_FAILURES", cls.breaker_failures)),
            breaker_window=number("BREAKER_WINDOW", cls.breaker_window),
            breaker_cooldown=number("BREAKER_COOLDOWN", cls.breaker_cooldown),
            worker_metrics_port=int(number("WORKER_METRICS_PORT", 9540)) or None,
            task_events=(env.get("CELERY_TASK_EVENTS") or "").lower() in ("1", "true", "yes", "on"),
            log_format=log_format(env.get("LOG_FORMAT")),
            cors_origins=tuple(
                filter(None, map(str.strip, env.get("CORS_ORIGINS", "").split(",")))
            ),
            preview_check=preview_check,
            check_max_rounds=check_max_rounds,
            check_concurrency=check_concurrency,
        )


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


def log_format(raw: str | None) -> str:
    chosen = (raw or "text").lower()
    if chosen not in ("json", "text"):
        raise ConfigError(f"LOG_FORMAT must be 'json' or 'text', got {raw!r}")
    return chosen


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
