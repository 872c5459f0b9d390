"""The E2B template of each framework, kept in `sandbox-templates/<framework>/` beside its starter.

A folder holds the pinned starter `app/` (the same one the local sandbox builds), `e2b.Dockerfile`
(the starter and its locked dependencies in `WORKSPACE`), `start.sh` (the dev server that
`DEV_SERVERS` names, left running in the VM's snapshot) and `e2b.toml` (the template's name, its
start and ready commands, CPU and memory). `build()` does what `e2b template create` does, with
the e2b SDK and the values of the toml; `definition()` is what it sends, and needs no network.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from e2b import Template, TemplateClass, default_build_logger

from orchestrator.errors import ConfigError, SandboxError
from orchestrator.sandboxes.templates import STARTERS


@dataclass(frozen=True)
class TemplateConfig:
    """One framework's `e2b.toml`, its paths resolved in the template's folder."""

    framework: str
    folder: Path
    name: str
    dockerfile: Path
    start_cmd: str
    ready_cmd: str
    cpu_count: int
    memory_mb: int


def load(framework: str, root: Path = STARTERS) -> TemplateConfig:
    folder = root / framework.lower()
    path = folder / "e2b.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no E2B template for {framework}: {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    try:
        config = TemplateConfig(
            framework=framework.upper(),
            folder=folder,
            name=str(raw["template_name"]),
            dockerfile=folder / str(raw["dockerfile"]),
            start_cmd=str(raw["start_cmd"]),
            ready_cmd=str(raw["ready_cmd"]),
            cpu_count=int(raw["cpu_count"]),
            memory_mb=int(raw["memory_mb"]),
        )
    except KeyError as exc:
        raise ConfigError(f"{path} has no {exc.args[0]}") from None
    if not config.dockerfile.is_file():
        raise ConfigError(f"{path} names {config.dockerfile.name}, which does not exist")
    return config


def definition(config: TemplateConfig) -> TemplateClass:
    """The template as the SDK builds it: the Dockerfile's steps, then the start command."""
    return (
        Template(file_context_path=config.folder)
        .from_dockerfile(str(config.dockerfile))
        .set_start_cmd(config.start_cmd, config.ready_cmd)
    )


def build(
    config: TemplateConfig, *, api_key: str, domain: str | None = None, api_url: str | None = None
) -> str:
    """Build and register the template under its name in the key's E2B team; its template id."""
    try:
        info = Template.build(
            definition(config),
            config.name,
            cpu_count=config.cpu_count,
            memory_mb=config.memory_mb,
            on_build_logs=default_build_logger(),
            api_key=api_key,
            domain=domain,
            api_url=api_url,
        )
    except Exception as exc:  # the SDK raises assorted types (auth, build failure, network)
        raise SandboxError(f"E2B could not build template {config.name!r}: {exc}") from exc
    return info.template_id
