"""Imports (DESIGN section 18): a real `git` clone from the tests' Git server, through the real
worker, into the project's next version; the rules of the read-back, the time and size limits,
the reaper, and a token that appears nowhere."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from models import Import, ImportStatus, transaction, utcnow
from orchestrator.imports import execute as imports
from orchestrator.settings import Settings
from tests.conftest import Api, unavailable, wait_for
from tests.fakes.git_server import GitServer
from tests.fakes.llm_server import ToolCall
from tests.test_versions_runs import calls, finish, run

FILES = {f"src/file{n:02}.js": f"export const n = {n};\n".encode() for n in range(48)}
FILES["index.html"] = b"<!doctype html><p>imported</p>\n"
FILES["README.md"] = b"# imported\n"


def start(api: Api, project_id: str, url: str, **more: Any) -> dict[str, Any]:
    answer = api.post(f"/api/projects/{project_id}/imports", json={"url": url, **more})
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def ended(api: Api, import_id: str, timeout: float = 30) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (
                (found := api.get(f"/api/imports/{import_id}").json())["status"]
                in ("COMPLETE", "FAILED")
                and found
            ),
            timeout,
            f"import {import_id} to end",
        )
    )


def name() -> str:
    return f"repo-{uuid.uuid4().hex[:8]}"


def test_an_import_holds_exactly_the_text_files_and_runs_no_hook(
    api: Api, git_server: GitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This machine's git configuration asks for hooks (a hooks path and a template that installs
    # a post-checkout hook): a clone that honoured either would write the marker.
    marker = tmp_path / "hook-ran"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "post-checkout").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (hooks / "post-checkout").chmod(0o755)
    (tmp_path / "template" / "hooks").mkdir(parents=True)
    (tmp_path / "template" / "hooks" / "post-checkout").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (tmp_path / "template" / "hooks" / "post-checkout").chmod(0o755)
    config = tmp_path / "gitconfig"
    config.write_text(
        f"[core]\n\thooksPath = {hooks}\n[init]\n\ttemplateDir = {tmp_path}/template\n"
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_TEMPLATE_DIR", str(tmp_path / "template"))
    repo = name()
    commit = git_server.repository(
        repo,
        {
            **FILES,
            "assets/blob.bin": os.urandom(5 * 1024 * 1024),
            "node_modules/left-pad/index.js": b"module.exports = 1;\n",
        },
        links={"passwd": "/etc/passwd", "escape/out": "../../../../outside"},
    )
    project = api.project()
    started = start(api, project["id"], git_server.url(repo))
    assert (started["status"], started["type"], started["ref"]) == ("PENDING", "GITHUB_REPO", None)
    assert started["projectId"] == project["id"] and started["fragmentId"] is None
    done = ended(api, started["id"])
    assert done["status"] == "COMPLETE", done
    assert done["error"] is None
    fragment = api.get(f"/api/fragments/{done['fragmentId']}/full").json()["fragment"]
    assert fragment["files"] == {path: data.decode() for path, data in FILES.items()}
    assert len(fragment["files"]) == 50
    assert fragment["metadata"]["importedFrom"] == {
        "url": git_server.url(repo),
        "ref": None,
        "commit": commit,
    }
    skipped = {item["path"]: item["reason"] for item in fragment["metadata"]["skipped"]}
    assert skipped["passwd"] == "symlink" and skipped["escape/out"] == "symlink"
    assert skipped["node_modules/"] == "dependency or build folder"
    assert "assets/blob.bin" in skipped
    assert fragment["version"] == 1 and fragment["parentId"] is None
    assert not marker.exists()
    versions = api.get(f"/api/projects/{project['id']}/versions").json()
    assert [v["id"] for v in versions] == [fragment["id"]]


def test_a_follow_up_prompt_starts_from_the_imported_files(
    api: Api, git_server: GitServer, llm: Any
) -> None:
    repo = name()
    git_server.repository(repo, FILES)
    project = api.project()
    imported = ended(api, start(api, project["id"], git_server.url(repo), ref="main")["id"])
    assert imported["status"] == "COMPLETE", imported
    old = "export const n = 3;\n"
    final, two = run(
        api,
        llm,
        project["id"],
        calls(ToolCall("read_file", {"path": "src/file03.js"})),
        calls(ToolCall("edit_file", {"path": "src/file03.js", "old": "= 3", "new": "= 33"})),
        finish("Edited"),
        prompt="Change file three",
    )
    assert final["toolCalls"][0]["result"]["content"] == old
    assert (two["version"], two["parentId"]) == (2, imported["fragmentId"])
    assert two["files"]["src/file03.js"] == "export const n = 33;\n"
    assert len(two["files"]) == 50
    assert two["changes"] == {"added": [], "modified": ["src/file03.js"], "deleted": []}


def test_a_private_repository_needs_its_token_which_appears_nowhere(
    api: Api,
    git_server: GitServer,
    db: Any,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = f"ghp_{uuid.uuid4().hex}"
    repo = name()
    git_server.private[repo] = token
    git_server.repository(repo, FILES)
    project = api.project()
    refused = ended(api, start(api, project["id"], git_server.url(repo))["id"])
    assert refused["status"] == "FAILED"
    assert "private or does not exist" in refused["error"]
    answers = []
    answer = api.post(
        f"/api/projects/{project['id']}/imports", json={"url": git_server.url(repo), "token": token}
    )
    answers.append(answer.text)
    done = ended(api, answer.json()["id"])
    answers.append(json.dumps(done))
    assert done["status"] == "COMPLETE", done
    answers.append(api.get(f"/api/fragments/{done['fragmentId']}/full").text)
    answers.append(api.get("/api/messages", params={"projectId": project["id"]}).text)
    # The server saw it, in a header: the test checks the right thing.
    assert any("Authorization: Basic" in r for r in git_server.requests)
    assert not any(token in a for a in answers)
    assert not any(token in r.split("\n", 1)[0] for r in git_server.requests)
    assert token not in caplog.text
    assert token not in database_dump(db)
    assert token not in redis_dump(redis_client)


def database_dump(db: Any) -> str:
    """Every row of every table, as text."""
    with db() as session:
        tables = [
            "users", "projects", "conversations", "messages", "fragments",
            "attachments", "imports", "idempotency_keys", "credit_ledger",
        ]  # fmt: skip
        return "\n".join(
            repr(row) for table in tables for row in session.execute(text(f"SELECT * FROM {table}"))
        )


def redis_dump(client: redis.Redis) -> str:
    """Every key and value this Redis holds, as text."""
    found = []
    for key in client.scan_iter():
        kind = client.type(key)
        value: Any = None
        if kind == b"string":
            value = client.get(key)
        elif kind == b"stream":
            value = client.xrange(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind in (b"set", b"zset"):
            value = client.smembers(key) if kind == b"set" else client.zrange(key, 0, -1)
        found.append(f"{key!r} {value!r}")
    return "\n".join(found)


def test_a_clone_that_hangs_ends_failed_at_its_time_limit_and_ps_never_shows_the_token(
    api: Api, settings: Settings
) -> None:
    token = f"ghp_{uuid.uuid4().hex}"
    project = api.project()
    hang_url = f"{settings.import_allowed_hosts[0]}/hang.git"
    started = start(api, project["id"], hang_url, token=token)
    # While git waits on the server, every process's command line is visible to anyone.
    lines = wait_for(
        lambda: [line for line in ps() if "hang.git" in line],
        20,
        "the clone's git process to show in ps",
    )
    assert not any(token in line for line in ps())
    assert lines
    done = ended(api, started["id"], timeout=30)
    assert done["status"] == "FAILED"
    assert "longer than 5 seconds" in done["error"]
    assert token not in json.dumps(done)
    assert not [line for line in ps() if "hang.git" in line]  # nothing left running


def ps() -> list[str]:
    if shutil.which("ps") is None:
        unavailable("ps is not installed (Debian: apt-get install procps)")
    return subprocess.run(
        ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout.splitlines()


def test_a_repository_over_the_size_limit_ends_failed(
    api: Api, git_server: GitServer, settings: Settings
) -> None:
    repo = name()
    git_server.repository(
        repo,
        {"index.html": b"<p>big</p>\n", **{f"blob{n}.bin": os.urandom(3 << 20) for n in range(3)}},
    )
    project = api.project()
    done = ended(api, start(api, project["id"], git_server.url(repo))["id"])
    assert done["status"] == "FAILED"
    assert f"larger than the {settings.import_max_mb} MB" in done["error"]
    assert api.get(f"/api/projects/{project['id']}/versions").json() == []


def test_a_redirect_is_not_followed(api: Api, git_server: GitServer) -> None:
    real, moved = name(), name()
    git_server.repository(real, FILES)
    # To the same server under a name that is not allowed: an internal address would look so.
    git_server.redirects[moved] = git_server.url(real).replace("127.0.0.1", "localhost")
    project = api.project()
    done = ended(api, start(api, project["id"], git_server.url(moved))["id"])
    assert done["status"] == "FAILED", done
    assert "could not be cloned" in done["error"] or "not found" in done["error"]
    assert not any(f"/{real}.git" in r.split("\n", 1)[0] for r in git_server.requests)


def test_an_import_is_the_callers_own(api: Api, make_api: Any, git_server: GitServer) -> None:
    repo = name()
    git_server.repository(repo, FILES)
    project = api.project()
    started = start(api, project["id"], git_server.url(repo))
    other = make_api()
    assert other.get(f"/api/imports/{started['id']}").status_code == 404
    answer = other.post(
        f"/api/projects/{project['id']}/imports", json={"url": git_server.url(repo)}
    )
    assert answer.status_code == 404
    assert ended(api, started["id"])["status"] == "COMPLETE"


def test_the_reaper_fails_an_import_whose_worker_stopped(
    db: Any, settings: Settings, api: Api
) -> None:
    project = api.project()
    long_ago = utcnow() - timedelta(seconds=settings.stale_after + 60)
    with transaction(db) as session:
        stale = Import(
            project_id=project["id"], user_id=api.user_id, url="https://github.com/a/b",
            status=ImportStatus.RUNNING, heartbeat_at=long_ago,
        )  # fmt: skip
        alive = Import(
            project_id=project["id"], user_id=api.user_id, url="https://github.com/a/c",
            status=ImportStatus.RUNNING, heartbeat_at=utcnow(),
        )  # fmt: skip
        session.add_all([stale, alive])
        session.flush()
        stale_id, alive_id = stale.id, alive.id
    assert imports.reap(db, settings) >= 1
    reaped = api.get(f"/api/imports/{stale_id}").json()
    assert reaped["status"] == "FAILED" and "stopped" in reaped["error"]
    assert api.get(f"/api/imports/{alive_id}").json()["status"] == "RUNNING"
    with transaction(db) as session:  # not left for the next test's reaper
        session.execute(text("DELETE FROM imports WHERE id = :id"), {"id": alive_id})


def test_a_prompt_with_a_repository_to_a_project_without_a_version_imports_first(
    api: Api, git_server: GitServer, llm: Any
) -> None:
    repo = name()
    git_server.repository(repo, FILES)
    project = api.project()
    llm.script(
        calls(ToolCall("read_file", {"path": "README.md"})),
        calls(ToolCall("edit_file", {"path": "README.md", "old": "imported", "new": "explained"})),
        finish("Read it"),
    )
    attachment = {"type": "GITHUB_REPO", "url": git_server.url(repo), "size": 0}
    sent = api.send(project["id"], "Explain this repository", attachments=[attachment])
    assert sent.status_code == 201, sent.text
    final = api.wait_terminal(sent.json()["messageId"], timeout=30)
    assert final["status"] == "COMPLETE", final
    assert final["toolCalls"][0]["result"]["content"] == "# imported\n"
    listed = api.get("/api/messages", params={"projectId": project["id"]}).json()
    prompt = next(m for m in listed if m["id"] == sent.json()["id"])
    import_id = prompt["attachments"][0]["importId"]
    imported = api.get(f"/api/imports/{import_id}").json()
    assert imported["status"] == "COMPLETE"
    two = api.get(f"/api/messages/{final['id']}/fragment").json()
    assert (two["version"], two["parentId"]) == (2, imported["fragmentId"])
    assert two["changes"] == {"added": [], "modified": ["README.md"], "deleted": []}
    # A project that has a version already: the attachment is the URL, as text, no import.
    llm.script(finish("Again"))
    again = api.send(project["id"], "And again", attachments=[attachment])
    api.wait_terminal(again.json()["messageId"])
    listed = api.get("/api/messages", params={"projectId": project["id"]}).json()
    later = next(m for m in listed if m["id"] == again.json()["id"])
    assert later["attachments"][0]["importId"] is None


def test_an_import_the_broker_cannot_take_is_503_and_leaves_nothing(
    api: Api, settings: Settings, db: Any, git_server: GitServer
) -> None:

    from tests.conftest import closed_port
    from tests.test_import_urls import imports_of
    from web import create_app
    from workers.app import create_celery

    project = api.project()
    with closed_port() as port:
        gone = settings.model_copy(update=dict(redis_url=f"redis://127.0.0.1:{port}/0"))
        client = create_app(gone, celery=create_celery(gone)).test_client()
        answer = client.post(
            f"/api/projects/{project['id']}/imports",
            json={"url": git_server.url("anything"), "token": "ghp_x"},
            headers={"Authorization": f"Bearer {api.token}"},
        )
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert "error" in answer.get_json()
    assert imports_of(db, project["id"]) == 0


def test_a_run_waiting_for_its_import_is_not_resent_until_the_import_ends(
    api: Api, db: Any, settings: Settings
) -> None:

    from orchestrator.runs import reaper
    from orchestrator.wiring.services import build_run_services
    from tests.test_runs import _pending_message

    quick = settings.model_copy(update=dict(pending_grace=0.01, max_resends=1000))
    services = build_run_services(quick)
    project = api.project()
    with transaction(db) as session:
        message = _pending_message(session, api, project["id"])
        waiting = Import(
            project_id=project["id"], user_id=api.user_id, url="https://github.com/a/b",
            status=ImportStatus.RUNNING, heartbeat_at=utcnow(), message_id=message.id,
        )  # fmt: skip
        session.add(waiting)
        session.flush()
        import_id, message_id = waiting.id, message.id
    sent: list[str] = []
    try:
        for _ in range(3):
            time.sleep(0.02)
            reaper.reap(services, dispatch=lambda m, _r: sent.append(m))
        assert message_id not in sent
        with transaction(db) as session:
            session.execute(
                text("UPDATE imports SET status = 'FAILED' WHERE id = :id"), {"id": import_id}
            )
        time.sleep(0.02)
        reaper.reap(services, dispatch=lambda m, _r: sent.append(m))
        assert message_id in sent
    finally:
        from tests.conftest import cancel_running_runs

        cancel_running_runs(settings)  # never enqueued: nothing else would end it
