"""Checked versions (DESIGN section 16): each version the model leaves is rendered in the machine's
Chromium and what fails goes back to the model.

Runs go through the runner the worker uses (real services, the real local sandbox serving static
files, the fake model over HTTP, Debian's Chromium through Playwright). Without a Chromium the
tests skip; under CI=true they fail.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from orchestrator.checks.browser import find_chromium
from orchestrator.runs.runner import RunServices, execute_run
from orchestrator.settings import Settings
from orchestrator.stop import StopFlag, never
from orchestrator.streams.events import EventLog
from orchestrator.tokens import user_token
from tests.conftest import SECRET, unavailable, wait_for
from tests.fakes.llm_server import FakeLLM, Reply, ToolCall

THROWS = "<!doctype html><h1>Hello</h1><script>throw new Error('boom at load')</script>\n"
FIXED = "<!doctype html><h1>Hello, fixed</h1>\n"
BLANK = "<!doctype html><html><body><div></div></body></html>\n"
HANGS = "<!doctype html><h1>Spinning</h1><script>while (true) {}</script>\n"


@dataclass
class Stack:
    """A configuration of its own: the web app's test client, and the worker's run services."""

    client: Any
    services: RunServices
    framework: str = "NEXTJS"

    def send(self, prompt: str) -> tuple[dict[str, str], dict[str, Any]]:
        headers = {"Authorization": f"Bearer {user_token(SECRET, f'checks-{uuid.uuid4().hex}')}"}
        project = self.client.post(
            "/api/projects", json={"name": "p", "framework": self.framework}, headers=headers
        )
        body = {"message": prompt, "projectId": project.get_json()["id"]}
        sent = self.client.post("/api/messages", json=body, headers=headers).get_json()
        return headers, sent

    def run(self, prompt: str) -> tuple[dict[str, Any], Any, dict[str, str]]:
        """A new user's prompt, run to its end in this thread: (message, fragment, headers)."""
        headers, sent = self.send(prompt)
        execute_run(self.services, sent["messageId"], sent["runId"])
        url = f"/api/messages/{sent['messageId']}"
        message = self.client.get(url, headers=headers).get_json()
        fragment = self.client.get(f"{url}/fragment", headers=headers).get_json()
        return message, fragment, headers


def make_stack(settings: Settings, framework: str = "NEXTJS") -> Iterator[Stack]:
    from orchestrator.wiring.services import build_run_services
    from web import create_app
    from workers.app import create_celery

    settings = settings.model_copy(update=dict(queue_name=f"unconsumed-{uuid.uuid4().hex[:8]}"))
    services = build_run_services(settings)
    client = create_app(settings, celery=create_celery(settings)).test_client()
    try:
        yield Stack(client, services, framework)
    finally:
        if services.checker is not None and services.checker.browser is not None:
            services.checker.browser.close()
        redis.Redis.from_url(settings.redis_url).delete(settings.queue_name)
        services.db.kw["bind"].dispose()


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[Stack]:
    if find_chromium() is None:
        unavailable("no Chromium: install the Debian package chromium")
    checked = settings.model_copy(
        update=dict(preview_check="chromium", check_max_rounds=2, agent_max_steps=8)
    )
    yield from make_stack(checked)


@pytest.fixture(scope="module")
def unchecked(settings: Settings) -> Iterator[Stack]:
    yield from make_stack(settings.model_copy(update=dict(preview_check="off")))


def page(content: str, title: str = "App") -> Reply:
    """The model writes index.html and finishes, in one answer."""
    return Reply(
        "",
        tool_calls=[
            ToolCall("write_file", {"path": "index.html", "content": content}),
            ToolCall("finish", {"title": title, "summary": "s"}),
        ],
    )


def checks_failed(llm: FakeLLM) -> list[str]:
    """The `Checks failed` messages the model was sent, as its last request holds them."""
    messages = llm.requests[-1]["messages"]
    return [
        m["content"]
        for m in messages
        if m["role"] == "user" and str(m["content"]).startswith("Checks failed")
    ]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def renderers() -> int:
    """The Chromium renderer processes (one per open page) under this test process."""
    from orchestrator.checks.browser import _descendants

    count = 0
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                count += b"--type=renderer" in cmdline.read()
        except OSError:
            continue  # it ended meanwhile
    return count


def check_events(stack: Stack, message_id: str) -> list[dict[str, Any]]:
    log = EventLog(redis.Redis.from_url(stack.services.settings.redis_url))
    return [data for _id, kind, data in log.read(message_id) if kind == "check"]


def test_a_page_that_throws_goes_back_to_the_model_which_fixes_it_in_a_second_round(
    stack: Stack, llm: FakeLLM
) -> None:
    llm.script(page(THROWS), page(FIXED, "Fixed"))
    message, fragment, headers = stack.run("Say hello")
    assert message["status"] == "COMPLETE", message
    # The model's second request carries what the browser saw.
    assert len(llm.requests) == 2
    told = checks_failed(llm)
    assert len(told) == 1 and "boom at load" in told[0], told
    assert len(told[0]) <= 4000
    checks = fragment["metadata"]["checks"]
    assert checks["status"] == "passed" and checks["rounds"] == 2, checks
    assert checks["render"]["pageErrors"] == [] and checks["render"]["blank"] is False
    assert checks["build"]["status"] == "skipped"  # a static app has no build
    assert set(checks) == {"status", "rounds", "build", "render"}
    assert set(checks["render"]) == {
        "status",
        "pageErrors",
        "consoleErrors",
        "failedRequests",
        "blocked",
        "blank",
        "durationMs",
    }
    assert fragment["files"]["index.html"] == FIXED and fragment["title"] == "Fixed"
    assert "still fail" not in message["content"]

    # Live: the stream told a client what each round found.
    events = check_events(stack, message["id"])
    assert [(e["phase"], e["status"]) for e in events] == [
        ("render", "running"),
        ("render", "failed"),
        ("render", "running"),
        ("render", "passed"),
    ]
    assert any("boom at load" in error for error in events[1]["errors"])
    assert "errors" not in events[3]

    # The screenshot, public like the preview, no bigger than the viewport.
    shot = stack.client.get(f"/api/fragments/{fragment['id']}/screenshot")
    assert shot.status_code == 200 and shot.content_type == "image/png"
    width, height = png_size(shot.data)
    assert 0 < width <= 1280 and 0 < height <= 800
    # The public share carries the verdict only.
    public = stack.client.get(f"/api/fragments/{fragment['id']}").get_json()
    assert public["metadata"]["checks"] == {"status": "passed"}
    # A restored version keeps its picture.
    restored = stack.client.post(
        f"/api/fragments/{fragment['id']}/restore", json={}, headers=headers
    ).get_json()["fragment"]
    again = stack.client.get(f"/api/fragments/{restored['id']}/screenshot")
    assert again.status_code == 200 and again.data == shot.data


def test_a_blank_page_fails_and_a_model_repeating_itself_gets_no_more_rounds(
    stack: Stack, llm: FakeLLM
) -> None:
    llm.script(page(BLANK), page(BLANK), page(FIXED))
    message, fragment, headers = stack.run("Make a page")
    assert message["status"] == "COMPLETE", message
    # The same errors twice: one repair round, not the two allowed.
    assert len(llm.requests) == 2
    told = checks_failed(llm)
    assert len(told) == 1 and "blank" in told[0], told
    checks = fragment["metadata"]["checks"]
    assert checks["status"] == "failed" and checks["rounds"] == 2, checks
    assert checks["render"]["blank"] is True
    # Saved all the same, saying in words what still fails; one credit spent.
    assert fragment["files"]["index.html"] == BLANK
    assert "still fail" in message["content"] and "blank" in message["content"]
    assert stack.client.get("/api/me", headers=headers).get_json()["credits"] == 4


def test_an_app_that_keeps_failing_stops_after_check_max_rounds(stack: Stack, llm: FakeLLM) -> None:
    """CHECK_MAX_ROUNDS=2 here: two repair rounds, three checks, then the version is saved."""
    broken = [THROWS.replace("boom at load", f"boom {n}") for n in range(4)]
    llm.script(*(page(p) for p in broken))
    message, fragment, headers = stack.run("Never fixed")
    assert message["status"] == "COMPLETE", message
    assert len(llm.requests) == 3
    assert len(checks_failed(llm)) == 2
    checks = fragment["metadata"]["checks"]
    assert checks["status"] == "failed" and checks["rounds"] == 3, checks
    assert any("boom 2" in e for e in checks["render"]["pageErrors"]), checks
    assert "still fail" in message["content"] and "boom 2" in message["content"]
    public = stack.client.get(f"/api/fragments/{fragment['id']}").get_json()
    assert public["metadata"]["checks"] == {"status": "failed"}  # not what failed
    # Three checks and three model turns, one prompt: one credit.
    assert stack.client.get("/api/me", headers=headers).get_json()["credits"] == 4


def test_requests_to_other_hosts_are_blocked_listed_and_never_leave_the_machine(
    stack: Stack, llm: FakeLLM
) -> None:
    # A listener the test owns: the page asks it by IP (no name to resolve), and must not reach it.
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(8)
        trap.setblocking(False)
        port = trap.getsockname()[1]
        fetches = (
            "<!doctype html><h1>Calls out</h1>"
            f'<img src="http://127.0.0.1:{port}/pixel.png" alt="">'
            "<script>fetch('https://example.com/data').catch(() => {});"
            f"fetch('http://127.0.0.1:{port}/api').catch(() => {{}});</script>\n"
        )
        llm.script(page(fetches))
        message, fragment, _ = stack.run("Call out")
        with pytest.raises(BlockingIOError):
            trap.accept()  # nothing ever connected
    assert message["status"] == "COMPLETE", message
    render = fragment["metadata"]["checks"]["render"]
    assert "https://example.com/data" in render["blocked"]
    assert f"http://127.0.0.1:{port}/api" in render["blocked"]
    assert f"http://127.0.0.1:{port}/pixel.png" in render["blocked"]
    # Blocked is not broken: the page handled it, and nothing of its own failed.
    assert fragment["metadata"]["checks"]["status"] == "passed", render


def test_a_cancel_during_the_render_check_stops_it_and_closes_its_browser_context(
    stack: Stack, llm: FakeLLM
) -> None:
    llm.script(page(HANGS))
    headers, sent = stack.send("Spin")
    ended: list[Any] = []
    runner = threading.Thread(
        target=lambda: ended.append(execute_run(stack.services, sent["messageId"], sent["runId"]))
    )
    runner.start()
    try:
        wait_for(
            lambda: (
                ("render", "running")
                in [(e["phase"], e["status"]) for e in check_events(stack, sent["messageId"])]
            ),
            timeout=30,
            what="the render check to start",
        )
        browser = stack.services.checker.browser  # type: ignore[union-attr]
        assert browser is not None
        # The page is open (and spinning): Chromium holds its context, and a renderer runs it.
        wait_for(lambda: browser.open_contexts() == 1, timeout=30, what="the check's context")
        wait_for(lambda: renderers() >= 1, timeout=30, what="a renderer for the page")
        url = f"/api/messages/{sent['messageId']}"
        assert stack.client.delete(url, headers=headers).status_code == 200
        runner.join(timeout=15)
        assert not runner.is_alive(), "the run went on checking after the cancel"
    finally:
        runner.join(timeout=60)
    # The worker hears of the DELETE from the cancel signal (it ends CANCELLED) or, when a write
    # of its own comes first, from that write finding the row no longer its own (it ends writing
    # nothing): either way it stopped at once, and the row says CANCELLED (below).
    assert ended in (["CANCELLED"], [None]), ended
    wait_for(lambda: browser.open_contexts() == 0, timeout=10, what="the check's context to close")
    # No browser process of the check is left (the process's browser itself stays, for the next).
    wait_for(lambda: renderers() == 0, timeout=10, what="the page's renderer process to end")
    message = stack.client.get(url, headers=headers).get_json()
    assert message["status"] == "CANCELLED"
    assert stack.client.get(f"{url}/fragment", headers=headers).get_json() is None


def test_with_preview_check_off_a_version_is_saved_unchecked_and_has_no_screenshot(
    unchecked: Stack, llm: FakeLLM
) -> None:
    llm.script(page(BLANK))
    message, fragment, _ = unchecked.run("Unchecked")
    assert message["status"] == "COMPLETE", message
    assert len(llm.requests) == 1 and checks_failed(llm) == []
    checks = fragment["metadata"]["checks"]
    assert checks["status"] == "skipped" and checks["rounds"] == 0, checks
    assert check_events(unchecked, message["id"]) == []
    shot = unchecked.client.get(f"/api/fragments/{fragment['id']}/screenshot")
    assert shot.status_code == 404
    unknown = unchecked.client.get(f"/api/fragments/{uuid.uuid4()}/screenshot")
    assert unknown.status_code == 404


def test_the_demo_model_fixes_the_bug_the_checks_report(settings: Settings) -> None:
    """The offline demo model (no keys) answers a `Checks failed` message with the fix, so
    `scripts/run` shows a repair for a prompt "with a bug"."""
    if find_chromium() is None:
        unavailable("no Chromium: install the Debian package chromium")
    demo = settings.model_copy(
        update=dict(providers=(), preview_check="chromium", agent_max_steps=8)
    )
    for stack in make_stack(demo):
        message, fragment, _ = stack.run("A to-do list with a bug")
        assert message["status"] == "COMPLETE", message
        checks = fragment["metadata"]["checks"]
        assert checks["status"] == "passed" and checks["rounds"] == 2, checks
        assert "missingList" not in fragment["files"]["app.js"]
        # The demo's own repair, titled after the user's prompt, not after the checks' report.
        assert "The checks found an error in app.js" in message["content"], message["content"]
        assert fragment["title"] == "To-Do List App"
        events = check_events(stack, message["id"])
        assert any("missingList" in e for e in events[1]["errors"]), events


def test_the_web_page_shows_each_versions_checks_and_screenshot_in_the_list(
    stack: Stack, llm: FakeLLM, server: str
) -> None:
    """Two versions: the list shows each one's badge (the failed one with its first error) and
    its screenshot before any is opened; the opened one's badge sits over its preview."""
    from playwright.sync_api import expect, sync_playwright

    llm.script(page(THROWS), page(FIXED, "Fixed"))
    first, fragment, headers = stack.run("Say hello")
    assert fragment["metadata"]["checks"]["status"] == "passed", fragment["metadata"]
    # A follow-up in the same project that never gets fixed (the same error twice: no more).
    llm.script(page(THROWS, "Broken"), page(THROWS, "Broken"))
    body = {"message": "Break it", "projectId": first["projectId"]}
    sent = stack.client.post("/api/messages", json=body, headers=headers).get_json()
    execute_run(stack.services, sent["messageId"], sent["runId"])
    url = f"/api/messages/{sent['messageId']}/fragment"
    broken = stack.client.get(url, headers=headers).get_json()
    assert broken["metadata"]["checks"]["status"] == "failed", broken["metadata"]
    token = headers["Authorization"].removeprefix("Bearer ")
    executable = find_chromium()
    assert executable is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            view = browser.new_page(viewport={"width": 1280, "height": 860})
            # The list as it first shows: the version the page opens never finishes opening
            # (its diff is held), so its fragment cannot stand in for the list's own reads.
            view.route("**/api/fragments/*/diff", lambda route: None)
            view.goto(f"{server}/#token={token}")
            view.get_by_test_id("project").first.click()
            versions = view.get_by_test_id("version")
            expect(versions).to_have_count(2, timeout=15_000)
            newest, oldest = versions.nth(0), versions.nth(1)
            expect(newest.get_by_test_id("version-checks")).to_have_text(
                "✗ checks failed: boom at load", timeout=15_000
            )
            expect(newest.get_by_test_id("version-checks")).to_have_attribute(
                "data-status", "failed"
            )
            expect(oldest.get_by_test_id("version-checks")).to_have_text(
                "✓ checks passed", timeout=15_000
            )
            for item, version in ((newest, broken), (oldest, fragment)):
                shot = item.get_by_test_id("version-shot")
                expect(shot).to_have_attribute(
                    "src", f"/api/fragments/{version['id']}/screenshot", timeout=15_000
                )
                view.wait_for_function(
                    "(img) => img.complete && img.naturalWidth > 0",
                    arg=shot.element_handle(),
                    timeout=15_000,
                )
            view.unroute("**/api/fragments/*/diff")
            view.get_by_role("button", name="Show version 1").click()
            badge = view.get_by_test_id("checks")
            expect(badge).to_have_text("✓ checks passed", timeout=15_000)
        finally:
            browser.close()


def test_a_live_preview_is_loaded_from_its_url_and_its_own_missing_files_are_reported() -> None:
    """What an E2B version's render check does: the page comes from the dev server's URL (here
    a server the test owns), its own 404s are failed requests, other origins stay blocked."""
    import http.server

    from orchestrator.checks.browser import Browser
    from orchestrator.checks.render import Target

    executable = find_chromium()
    if executable is None:
        unavailable("no Chromium: install the Debian package chromium")
        return
    live = (
        b"<!doctype html><h1>Live</h1><script src='/missing.js'></script>"
        b"<script>fetch('https://example.com/x').catch(() => {})</script>"
    )

    class DevServer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(live if found else b"not found")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DevServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    browser = Browser(executable, 1, resolve_hosts=True)  # as for E2B: names resolve
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        found = browser.render(Target(url), never())
    finally:
        browser.close()
        server.shutdown()
    assert found.status == "failed", found
    assert found.failed_requests == ("/missing.js (404)",), found
    assert found.blocked == ("https://example.com/x",)
    assert found.blank is False and found.screenshot is not None


def test_checks_beyond_check_concurrency_wait_their_turn_and_stay_cancellable() -> None:
    from orchestrator.checks.browser import Browser
    from orchestrator.checks.render import served
    from orchestrator.providers.base import Cancelled

    executable = find_chromium()
    if executable is None:
        unavailable("no Chromium: install the Debian package chromium")
        return
    browser = Browser(executable, 1)  # CHECK_CONCURRENCY=1
    stop_first, stop_second = StopFlag(), StopFlag()
    ended: dict[str, Any] = {}

    def check(name: str, stop: StopFlag) -> None:
        try:
            ended[name] = browser.render(served({"index.html": HANGS}), stop)
        except Cancelled:
            ended[name] = "cancelled"

    first = threading.Thread(target=check, args=("first", stop_first))
    second = threading.Thread(target=check, args=("second", stop_second))
    try:
        first.start()
        wait_for(lambda: browser.open_contexts() == 1, timeout=30, what="the first check's page")
        second.start()
        wait_for(lambda: browser.waiting == 1, timeout=30, what="the second check to wait")
        assert browser.open_contexts() == 1  # the second never opened a page
        stop_second.request("cancelled")  # a run cancelled while it waits for its turn
        second.join(timeout=10)
        assert ended.get("second") == "cancelled" and browser.waiting == 0
        stop_first.request("cancelled")
        first.join(timeout=10)
        assert ended.get("first") == "cancelled"
        wait_for(lambda: browser.open_contexts() == 0, timeout=10, what="the page to close")
    finally:
        stop_first.request("cancelled")
        stop_second.request("cancelled")
        for thread in (first, second):
            if thread.ident is not None:  # started
                thread.join(timeout=30)
        browser.close()


def test_the_settings_default_to_checking_and_refuse_what_they_do_not_know() -> None:
    from orchestrator.errors import ConfigError
    from orchestrator.wiring.services import describe_checks

    found = Settings.from_env({})
    assert (found.preview_check, found.check_max_rounds, found.check_concurrency) == (
        "chromium",
        3,
        2,
    )
    off = Settings.from_env({"PREVIEW_CHECK": "off", "CHECK_MAX_ROUNDS": "1"})
    assert off.preview_check == "off" and off.check_max_rounds == 1
    assert "checks: off" in describe_checks(off)
    if find_chromium() is not None:
        assert describe_checks(found).startswith("checks: on")
    for bad in ({"PREVIEW_CHECK": "firefox"}, {"CHECK_CONCURRENCY": "0"}):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)
