"""The same agent runs with SANDBOX=e2b, against the offline fake of the E2B API and envd."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from typing import Any

import redis

from orchestrator.settings import Settings
from orchestrator.tokens import user_token
from tests.conftest import SECRET, run_prompt, running_stack, wait_for
from tests.fakes.e2b_server import FakeE2B
from tests.fakes.llm_server import Error, Reply, ToolCall


def test_an_e2b_run_ends_with_a_kept_alive_preview(
    e2b_settings: Settings, fake_e2b: FakeE2B, llm: Any, worker: Any
) -> None:
    llm.script(
        Reply("", tool_calls=[ToolCall("write_file", {"path": "src/App.tsx", "content": "x"})]),
        Reply("", tool_calls=[ToolCall("run_command", {"command": "cat src/App.tsx"})]),
        Reply("Done.", tool_calls=[ToolCall("finish", {"title": "App", "summary": "S"})]),
    )
    with running_stack(e2b_settings) as (client, execute):
        message, fragment = run_prompt(client, execute, "Build a counter", "REACT")
    assert message["status"] == "COMPLETE", message
    assert message["toolCalls"][1]["result"]["stdout"] == "x"
    sandbox_id = fragment["sandboxId"]
    assert sandbox_id in fake_e2b.sandboxes
    assert fake_e2b.sandboxes[sandbox_id].template == "react-developer"
    assert fragment["sandboxUrl"] == f"https://5173-{sandbox_id}.{fake_e2b.domain}"
    assert fragment["files"] == {"src/App.tsx": "x"}
    assert fake_e2b.sandboxes[sandbox_id].state == "alive"
    assert fake_e2b.calls_to("POST", f"/sandboxes/{sandbox_id}/timeout")
    assert fragment["metadata"]["sandbox"]["sandbox"] == "e2b"


def test_a_failed_e2b_run_kills_its_sandbox(
    e2b_settings: Settings, fake_e2b: FakeE2B, llm: Any, fallback_llm: Any, worker: Any
) -> None:
    llm.script(
        Reply("", tool_calls=[ToolCall("write_file", {"path": "a.txt", "content": "x"})]),
        Error(500),
        Error(500),
        Error(500),
    )
    fallback_llm.script(Error(500), Error(500), Error(500))
    with running_stack(e2b_settings) as (client, execute):
        message, fragment = run_prompt(client, execute, "Build a counter", "VUE")
    assert message["status"] == "FAILED"
    assert fragment is None
    (sandbox,) = fake_e2b.sandboxes.values()
    assert sandbox.state == "killed"


def test_the_vm_is_asked_to_outlive_the_run_deadline(
    e2b_settings: Settings, fake_e2b: FakeE2B, llm: Any, worker: Any
) -> None:
    # A VM that expires before the run's deadline dies under a run that is still allowed to work.
    settings = e2b_settings.model_copy(update=dict(run_deadline=1500.0))
    llm.script(
        Reply("", tool_calls=[ToolCall("write_file", {"path": "a.txt", "content": "x"})]),
        Reply("Done.", tool_calls=[ToolCall("finish", {"title": "App", "summary": "S"})]),
    )
    with running_stack(settings) as (client, execute):
        message, _fragment = run_prompt(client, execute, "Build a counter", "REACT")
    assert message["status"] == "COMPLETE", message
    (create,) = fake_e2b.calls_to("POST", "/v2/sandboxes")
    assert create.body["timeout"] >= settings.run_deadline


def test_an_e2b_run_is_told_its_framework_and_dev_server(
    e2b_settings: Settings, llm: Any, worker: Any
) -> None:
    llm.script(Reply("Nothing to build."))
    with running_stack(e2b_settings) as (client, execute):
        message, _fragment = run_prompt(client, execute, "Hello", "NEXTJS")
    assert message["status"] == "COMPLETE", message
    text = llm.requests[0]["messages"][0]["content"]
    # The starter its template holds (sandbox-templates/nextjs/app), as the local sandbox's.
    assert "Next.js 14" in text and "app/page.jsx" in text and "dev server" in text
    assert "static files" not in text


def test_a_heartbeat_as_a_run_ends_leaves_its_preview_alive(
    e2b_settings: Settings, fake_e2b: FakeE2B, llm: Any, worker: Any
) -> None:
    """The process's heartbeat runs while runs end: one that finds a run's row COMPLETE before
    the run left the hub trips the run's watch ("lost"), and must not kill the VM the ending kept
    alive for its preview. Heartbeats are sent back to back for the whole of each run, so some
    land between the COMPLETE write and the run leaving the hub."""
    from orchestrator.runs.runner import execute_run
    from orchestrator.wiring.services import build_run_services
    from web import create_app
    from workers.worker import create_worker_app

    settings = e2b_settings.model_copy(
        update=dict(queue_name=f"unconsumed-{uuid.uuid4().hex[:8]}", default_credits=20)
    )
    services = build_run_services(settings)
    client = create_app(settings, celery=create_worker_app(settings)).test_client()
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'beat-{uuid.uuid4().hex[:8]}')}"}
    try:
        for attempt in range(8):
            llm.script(
                Reply("", tool_calls=[ToolCall("write_file", {"path": "a.txt", "content": "x"})]),
                Reply("Done.", tool_calls=[ToolCall("finish", {"title": "App", "summary": "S"})]),
            )
            project = client.post(
                "/api/projects", json={"name": f"p{attempt}", "framework": "REACT"}, headers=headers
            ).get_json()
            body = {"message": "Build it", "projectId": project["id"]}
            sent = client.post("/api/messages", json=body, headers=headers).get_json()
            run = threading.Thread(
                target=execute_run, args=(services, sent["messageId"], sent["runId"])
            )
            run.start()
            give_up = time.monotonic() + 30
            while run.is_alive():
                assert time.monotonic() < give_up, f"run {attempt + 1} did not end in 30 s"
                services.hub.heartbeat()
            url = f"/api/messages/{sent['messageId']}"
            assert client.get(url, headers=headers).get_json()["status"] == "COMPLETE"
            fragment = client.get(f"{url}/fragment", headers=headers).get_json()
            time.sleep(0.2)  # a kill the trip started runs on a thread of its own
            state = fake_e2b.sandboxes[fragment["sandboxId"]].state
            assert state == "alive", f"run {attempt + 1}: the preview's VM is {state}"
    finally:
        redis.Redis.from_url(settings.redis_url).delete(settings.queue_name)
        services.db.kw["bind"].dispose()


def test_delete_on_e2b_kills_the_vm_and_nothing_is_written_after(
    e2b_settings: Settings, fake_e2b: FakeE2B, llm: Any, redis_client: Any
) -> None:
    """DELETE /api/messages/<id> through the web app while the run's VM runs a command: the
    run's worker (the runner, its process's cancel listener on Redis) kills the VM, writes no
    file, no row and no event after the cancel, and never asks the model again."""
    from orchestrator.runs.runner import execute_run
    from orchestrator.streams.events import EventLog
    from orchestrator.wiring.services import build_run_services
    from web import create_app
    from workers.worker import create_worker_app

    marker = f"sleep 30.{uuid.uuid4().int % 10**6}"
    llm.script(
        Reply("", tool_calls=[ToolCall("write_file", {"path": "src/App.jsx", "content": "x"})]),
        Reply("", tool_calls=[ToolCall("run_command", {"command": marker, "timeout": 120})]),
        Reply("never", tool_calls=[ToolCall("finish", {"title": "App", "summary": "S"})]),
    )
    settings = e2b_settings.model_copy(update=dict(queue_name=f"unconsumed-{uuid.uuid4().hex[:8]}"))
    services = build_run_services(settings)
    client = create_app(settings, celery=create_worker_app(settings)).test_client()
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'e2b-del-{uuid.uuid4().hex[:8]}')}"}
    try:
        project = client.post(
            "/api/projects", json={"name": "p", "framework": "REACT"}, headers=headers
        ).get_json()
        body = {"message": "Build it", "projectId": project["id"]}
        sent = client.post("/api/messages", json=body, headers=headers).get_json()
        run = threading.Thread(
            target=execute_run, args=(services, sent["messageId"], sent["runId"]), daemon=True
        )
        run.start()

        def command() -> Any:
            for sandbox in list(fake_e2b.sandboxes.values()):
                for process in list(sandbox.processes.values()):
                    if process.command == marker and process.running:
                        return sandbox, process
            return None

        sandbox, process = wait_for(command, 30, "the run's command to run in its VM")
        calls_before = len(fake_e2b.calls)
        answer = client.delete(f"/api/messages/{sent['messageId']}", headers=headers)
        assert (answer.status_code, answer.get_json()) == (200, {"success": True})
        run.join(timeout=15)
        assert not run.is_alive(), "the run did not stop after DELETE"

        assert sandbox.state == "killed" and not process.running  # the VM, and its command
        assert fake_e2b.calls_to("DELETE", f"/sandboxes/{sandbox.id}")
        after = [call.path for call in fake_e2b.calls[calls_before:]]
        writes = [p for p in after if p in ("/files", "/filesystem.Filesystem/MakeDir")]
        assert writes == [] and "/process.Process/Start" not in after, after
        url = f"/api/messages/{sent['messageId']}"
        message = client.get(url, headers=headers).get_json()
        assert message["status"] == "CANCELLED", message
        assert client.get(f"{url}/fragment", headers=headers).get_json() is None
        events = [
            (kind, data) for _id, kind, data in EventLog(redis_client).read(sent["messageId"])
        ]
        assert events[-1] == ("done", {"status": "CANCELLED"})
        assert [kind for kind, _ in events].count("done") == 1
        time.sleep(0.5)  # anything still on its way from the run would land now
        assert client.get(url, headers=headers).get_json() == message
        assert len(EventLog(redis_client).read(sent["messageId"])) == len(events)
        assert len(llm.requests) == 2  # never asked again after the cancel
    finally:
        redis.Redis.from_url(settings.redis_url).delete(settings.queue_name)
        services.db.kw["bind"].dispose()


def test_an_e2b_version_is_render_checked_at_its_dev_servers_url(
    e2b_settings: Settings, fake_e2b: FakeE2B, llm: Any
) -> None:
    """DESIGN section 16 on E2B: the render check opens the sandbox's preview URL (the dev server
    behind E2B's edge, here the fake's), what the page throws goes back to the model, and other
    origins stay blocked. The browser reaches the edge through the fake, as a proxy."""
    from orchestrator.checks.browser import Browser, find_chromium
    from orchestrator.checks.checker import Checker
    from orchestrator.runs.runner import execute_run
    from orchestrator.wiring.services import build_run_services
    from tests.conftest import unavailable
    from tests.test_checks import FIXED, THROWS, checks_failed, page, png_size
    from web import create_app
    from workers.worker import create_worker_app

    chromium = find_chromium()
    if chromium is None:
        unavailable("no Chromium: install the Debian package chromium")
        return
    calls_out = FIXED + "<script>fetch('https://example.com/x').catch(() => {})</script>\n"
    llm.script(page(THROWS), page(calls_out, "Fixed"))
    settings = e2b_settings.model_copy(
        update=dict(
            queue_name=f"unconsumed-{uuid.uuid4().hex[:8]}",
            preview_check="chromium",
            check_max_rounds=2,
            agent_max_steps=8,
        )
    )
    browser = Browser(
        chromium, 1, resolve_hosts=True, proxy=fake_e2b.preview_proxy, ignore_https_errors=True
    )
    services = replace(build_run_services(settings), checker=Checker(browser))
    client = create_app(settings, celery=create_worker_app(settings)).test_client()
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'e2b-chk-{uuid.uuid4().hex[:8]}')}"}
    try:
        project = client.post(
            "/api/projects", json={"name": "p", "framework": "REACT"}, headers=headers
        ).get_json()
        body = {"message": "Say hello", "projectId": project["id"]}
        sent = client.post("/api/messages", json=body, headers=headers).get_json()
        execute_run(services, sent["messageId"], sent["runId"])
        url = f"/api/messages/{sent['messageId']}"
        message = client.get(url, headers=headers).get_json()
        fragment = client.get(f"{url}/fragment", headers=headers).get_json()
        shot = client.get(f"/api/fragments/{fragment['id']}/screenshot")
    finally:
        browser.close()
        redis.Redis.from_url(settings.redis_url).delete(settings.queue_name)
        services.db.kw["bind"].dispose()
    assert message["status"] == "COMPLETE", message
    host = f"5173-{fragment['sandboxId']}.{fake_e2b.domain}"
    assert fragment["sandboxUrl"] == f"https://{host}"
    # Both rounds loaded the page from the dev server's URL; the page's call out never left.
    assert fake_e2b.preview_requests.count((host, "/")) >= 2, fake_e2b.preview_requests
    tunnels = {c.path for c in fake_e2b.calls if c.method == "CONNECT"}
    assert f"{host}:443" in tunnels and "example.com:443" not in tunnels, tunnels
    told = checks_failed(llm)
    assert len(told) == 1 and "boom at load" in told[0], told
    checks = fragment["metadata"]["checks"]
    assert checks["status"] == "passed" and checks["rounds"] == 2, checks
    assert checks["build"]["status"] == "skipped"  # the dev server builds as it serves
    render = checks["render"]
    assert render["status"] == "passed" and render["pageErrors"] == [], render
    assert render["blocked"] == ["https://example.com/x"] and render["blank"] is False
    assert shot.status_code == 200 and 0 < png_size(shot.data)[0] <= 1280
