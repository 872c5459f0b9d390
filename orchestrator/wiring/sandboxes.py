"""The sandbox factory a process runs on, and where the local sandbox keeps its folders.

Used by the workers, by the CLI, and by the web process to revive a paused E2B preview: it
loads no provider and no run engine.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.sandboxes import places
from orchestrator.sandboxes.base import SandboxFactory
from orchestrator.sandboxes.places import SandboxPlaces
from orchestrator.sandboxes.templates import TemplateStore
from orchestrator.settings import Settings


def build_sandboxes(settings: Settings) -> SandboxFactory:
    if settings.sandbox == "e2b":
        from orchestrator.sandboxes.e2b import E2BSandboxFactory

        assert settings.e2b_api_key
        return E2BSandboxFactory(
            settings.e2b_api_key,
            templates=dict(settings.e2b_templates),
            api_url=settings.e2b_api_url,
            sandbox_url=settings.e2b_sandbox_url,
            domain=settings.e2b_domain,
            run_deadline=settings.run_deadline,
        )
    from orchestrator.sandboxes.local import LocalSandboxFactory
    from orchestrator.sandboxes.local_process import IsolationUnavailable

    # "required" (DESIGN section 15): bubblewrap or nothing; "best-effort" falls back to plain
    # subprocesses (a scrubbed environment, limits, a uid of their own only when we are root).
    required = settings.sandbox_isolation == "required"
    found = sandbox_places(settings)
    try:
        return LocalSandboxFactory(
            found.root,
            isolation="bwrap" if required else "auto",
            templates=TemplateStore(found.templates) if found.templates is not None else None,
        )
    except IsolationUnavailable as exc:
        raise ConfigError(
            f"SANDBOX_ISOLATION=required, but bubblewrap cannot run sandbox commands here: {exc}. "
            "Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and allow user "
            "namespaces, or set SANDBOX_ISOLATION=best-effort to run the model's commands "
            "without isolation (development only: they can read what the worker's user can)."
        ) from exc


def sandbox_places(settings: Settings) -> SandboxPlaces:
    """The local sandbox's workspaces and templates, where its sandbox users can reach them."""
    templates = settings.sandbox_templates
    return places.choose(
        Path(settings.data_dir),
        Path(settings.sandbox_root),
        Path(templates) if templates is not None else None,
        for_other_users=os.geteuid() == 0,
    )


def template_store(settings: Settings) -> TemplateStore | None:
    """The local sandbox's prepared framework templates, or None when they are off."""
    found = sandbox_places(settings).templates
    return TemplateStore(found) if found is not None else None
