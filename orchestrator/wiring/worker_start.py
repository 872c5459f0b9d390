"""What a worker makes sure of before it takes a run: sandboxes it can build, and their templates.

A worker that took runs it can only fail would fail a share of every user's prompts (one
unprepared machine in a pool is enough). So at start, with the local sandbox, it refuses when
sandboxes cannot be isolated as configured (DESIGN section 15), says where their folders are,
and, with templates on, prepares every framework template that is missing (npm ci, once per
machine, its progress logged) or refuses to start, naming the command that prepares them and the
setting that turns them off.
"""

from __future__ import annotations

import logging

from orchestrator.sandboxes.prepare import prepare_missing
from orchestrator.sandboxes.templates import SPECS, TemplateStore
from orchestrator.settings import Settings
from orchestrator.wiring.sandboxes import build_sandboxes, sandbox_places
from orchestrator.wiring.services import describe_checks

log = logging.getLogger(__name__)


def check_worker_sandboxes(settings: Settings, *, takes_runs: bool = True) -> None:
    """Raise ConfigError (saying what to run or set) when this worker should not start.

    `takes_runs`: False for a worker that only sweeps (the Procfile's reaper), which builds no
    app and so needs no template.
    """
    if settings.sandbox != "local":
        return
    build_sandboxes(settings)  # bubblewrap as configured, folders sandbox users can reach
    places = sandbox_places(settings)
    if places.moved:
        log.warning("%s", places.moved)
    templates = places.templates
    log.info(
        "local sandbox: workspaces in %s; framework templates %s",
        places.root,
        f"in {templates}" if templates else "off (SANDBOX_TEMPLATES=off: static apps only)",
    )
    if templates is None or not takes_runs:
        return
    store = TemplateStore(templates)
    prepare_missing(store, lambda line: log.info("%s", line))
    ready = ", ".join(SPECS[name].folder for name in store.ready())
    log.info("framework templates ready: %s", ready)


def log_checks(settings: Settings) -> None:
    """Whether this worker checks the versions its runs leave (DESIGN section 16), and how."""
    line = describe_checks(settings)
    if settings.preview_check != "off" and "no Chromium" in line:
        log.warning("%s", line)
    else:
        log.info("%s", line)
