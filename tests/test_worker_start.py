"""A worker never takes a run it can only fail (orchestrator/wiring/worker_start.py).

The Procfile's `worker` line, started through honcho from a fresh clone whose templates folder
lacks what it needs: without npm it refuses to start, saying the command that prepares the
templates and the setting that turns them off; with npm it prepares what is missing, saying so as
it goes, and then serves runs of that framework to COMPLETE.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.sandboxes.templates import TemplateStore
from orchestrator.settings import Settings
from orchestrator.tokens import user_token
from tests.conftest import SANDBOX_ROOTS, SECRET, wait_for
from tests.procfile_line import ProcfileLine

BIN = Path(sys.executable).parent


def _worker_env(clone: Path, settings: Settings, path: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": path,
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(clone),  # this clone's code
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "AUTH_SECRET": SECRET,
        "QUEUE_NAME": f"start-{uuid.uuid4().hex[:8]}",
        "SANDBOX_ISOLATION": "best-effort",  # bubblewrap when it works (the PATH may lack it)
        "WORKER_CONCURRENCY": "1",
        "WORKER_METRICS_PORT": "0",
        **extra,
    }


def test_without_npm_the_procfile_worker_refuses_to_start_and_says_what_to_run(
    clone: Path, settings: Settings
) -> None:
    # The virtualenv's programs and nothing else: no npm (nor node) on this PATH.
    env = _worker_env(clone, settings, str(BIN))
    SANDBOX_ROOTS.append(str(clone / ".data" / "sandboxes"))
    line = ProcfileLine("worker", clone, env)
    try:
        line.process.wait(timeout=90)
    finally:
        line.stop()
    said = line.text()
    assert line.process.returncode != 0, said[-3000:]
    assert "worker not started" in said, said[-3000:]
    assert f"not prepared in {clone / '.data' / 'templates'}" in said  # the default folder
    assert "react, vue, svelte, nextjs, angular" in said
    assert "npm is not installed" in said
    assert "`orchestrator sandbox prepare`" in said  # the command to run
    assert "SANDBOX_TEMPLATES=off" in said  # or how to run without templates
    assert " ready." not in said


@pytest.mark.timeout(900)  # the first session on a machine prepares all five templates
def test_the_procfile_worker_prepares_a_missing_template_then_serves_its_runs(
    clone: Path, settings: Settings, all_templates: Path
) -> None:
    # Four templates prepared (the shared ones, linked), Svelte's missing: npm ci at start.
    templates = clone.parent / "templates"
    templates.mkdir(mode=0o755)
    for framework in ("react", "vue", "nextjs", "angular"):
        (templates / framework).symlink_to(all_templates / framework)
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    env = _worker_env(clone, settings, path, SANDBOX_TEMPLATES=str(templates))
    SANDBOX_ROOTS.append(str(clone / ".data" / "sandboxes"))
    line = ProcfileLine("worker", clone, env)
    try:
        line.wait_until_seen(" ready.", 600)
        said = line.text()
        assert "framework templates not prepared: svelte" in said
        assert "svelte template: installing (1 of 1)" in said
        assert "svelte template: installed" in said
        assert "framework templates ready: react, vue, svelte, nextjs, angular" in said
        assert TemplateStore(templates).prepared("SVELTE") is not None

        # The worker takes a Svelte run (the offline demo: no LLM key in its environment).
        message = _send_and_wait(
            settings.model_copy(update=dict(queue_name=env["QUEUE_NAME"])), "SVELTE", line
        )
        assert message["status"] == "COMPLETE", (message, line.text()[-3000:])
    finally:
        line.stop()


def _send_and_wait(settings: Settings, framework: str, line: ProcfileLine) -> dict[str, object]:
    from web import create_app
    from workers.worker import create_worker_app

    client = create_app(settings, celery=create_worker_app(settings)).test_client()
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'start-{time.time_ns()}')}"}
    project = client.post(
        "/api/projects", json={"name": "p", "framework": framework}, headers=headers
    ).get_json()
    sent = client.post(
        "/api/messages",
        json={"message": "Build a to-do list app", "projectId": project["id"]},
        headers=headers,
    ).get_json()

    def finished() -> dict[str, object] | None:
        assert not line.exited(), line.text()[-3000:]
        found = client.get(f"/api/messages/{sent['messageId']}", headers=headers).get_json()
        done = found["status"] in ("COMPLETE", "FAILED", "CANCELLED")
        return dict(found) if done else None

    return dict(wait_for(finished, 120, "the worker to finish the run"))
