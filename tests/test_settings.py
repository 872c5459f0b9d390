"""Settings declared once (orchestrator/settings.py): each field is its environment variable,
only the mapping handed to `from_env` is read, and the values read as they always did."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# Subprocesses handed the environment they run in (npm, git): no setting is read there.
PASSED_THROUGH = {"orchestrator/sandboxes/prepare.py", "orchestrator/git/commands.py"}


def test_a_field_is_its_variable_by_name_or_alias() -> None:
    settings = Settings.from_env(
        {
            "RUN_STALE_AFTER": "7",
            "RUN_MAX_RESENDS": "4",
            "CELERY_TASK_EVENTS": "on",
            "FLUSH_INTERVAL": "0.5",
            "LOG_LEVEL": "DEBUG",
            "EVENT_STREAM_MAXLEN": "50",
            "CORS_ORIGINS": " https://a.example ,,https://b.example",
            # Built in code, never read from one variable of its own name.
            "PROVIDERS": "not json",
        }
    )
    assert settings.stale_after == 7.0
    assert settings.max_resends == 4
    assert settings.task_events is True
    assert settings.flush_interval == 0.5
    assert settings.log_level == "DEBUG"
    assert settings.event_stream_maxlen == 50
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.providers == ()


def test_only_the_mapping_handed_over_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "PREVIEW_CHECK": "chromium",
        "QUEUE_NAME": "from-the-process",
        "WORKER_METRICS_PORT": "9999",
    }.items():
        monkeypatch.setenv(name, value)
    by_hand = Settings()
    assert (by_hand.preview_check, by_hand.queue_name) == ("off", "generation")
    assert by_hand.worker_metrics_port is None
    # The environment's own defaults differ from a Settings built by hand on these two.
    from_env = Settings.from_env({})
    assert (from_env.preview_check, from_env.worker_metrics_port) == ("chromium", 9540)
    assert from_env.queue_name == "generation"


def test_values_read_as_they_always_did(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "DATA_DIR": str(tmp_path),
            "DEFAULT_CREDITS": "2.5",  # a count from a decimal: its whole part
            "AGENT_MAX_STEPS": "",  # empty: unset
            "WORKER_METRICS_PORT": "0",  # no endpoint
            "IMPORT_ALLOWED_HOSTS": "",  # empty here: no host at all
            "SANDBOX_TEMPLATES": "Off",
            "PORT": "7001",
            "DATABASE_URL": "postgres://u@db/app",
        }
    )
    assert settings.default_credits == 2
    assert settings.agent_max_steps == 25
    assert settings.worker_metrics_port is None
    assert settings.import_allowed_hosts == ()
    assert settings.sandbox_templates is None
    assert settings.sandbox_root == str(tmp_path / "sandboxes")
    assert settings.public_url == "http://127.0.0.1:7001"
    assert settings.database_url == "postgresql+psycopg://u@db/app"
    with pytest.raises(ConfigError, match="^RUN_PENDING_GRACE must be a number, got 'soon'$"):
        Settings.from_env({"RUN_PENDING_GRACE": "soon"})
    with pytest.raises(ConfigError, match="^SANDBOX must be 'local' or 'e2b', got 'docker'$"):
        Settings.from_env({"SANDBOX": "Docker"})


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]
    assert settings.model_copy(update={"port": 1}).port == 1


def test_no_environment_read_outside_settings() -> None:
    """The process environment reaches the code through orchestrator/settings.py alone."""
    found = []
    for package in ("orchestrator", "workers", "web", "models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            if name == "orchestrator/settings.py" or name in PASSED_THROUGH:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in ("environ", "getenv")
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "os"
                ):
                    found.append(f"{name}:{node.lineno}")
    assert found == []
