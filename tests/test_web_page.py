"""The web page (DESIGN section 13) in a real browser: Debian's Chromium driven by Playwright.

Through the real web server, Celery worker and the scripted LLM. No browser is ever downloaded:
the system's `/usr/bin/chromium` (Debian package `chromium`) runs it; without it the tests skip
locally and fail under CI=true. Screenshots of the main states go to `test-output/web-page/`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models import transaction
from orchestrator import accounts
from orchestrator.wiring.bundled_redis import free_port
from tests.conftest import SANDBOX_ROOTS, Api, unavailable, wait_for
from tests.fakes.llm_server import Reply, ToolCall
from tests.fakes.tcp_proxy import TcpProxy

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "web-page"
WAIT_MS = 20_000

PAGE_V1 = (
    "<!doctype html><html><head><link rel=stylesheet href=style.css></head><body>"
    '<h1 id="greeting">Hello from v1</h1><p id="js">no script</p>'
    "<script src=app.js></script></body></html>"
)
APP_JS = "document.getElementById('js').textContent = 'scripts run';\n"
STYLE = "body { font-family: sans-serif; background: #fdf6e3; }\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not executable:
        unavailable(f"no Chromium at {CHROMIUM}: install the Debian package chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, api: Api, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context; afterwards no request URL may have carried the user's JWT."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    urls: list[str] = []
    opened.on("request", lambda r: urls.append(r.url))
    problems: list[str] = []
    opened.on("pageerror", lambda e: problems.append(str(e)))
    opened.urls = urls
    yield opened
    context.close()
    assert not [u for u in urls if api.token in u.split("#")[0]], "a JWT was sent in a URL"
    assert not problems, problems


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def sign_in(page: Any, base: str, api: Api) -> None:
    page.goto(f"{base}/#token={api.token}")
    page.get_by_test_id("create-project").wait_for()
    assert api.token not in page.url  # it moved to sessionStorage


def create_project(page: Any, name: str, framework: str = "REACT") -> None:
    page.get_by_test_id("project-name").fill(name)
    page.get_by_test_id("framework").select_option(framework)
    page.get_by_test_id("create-project").click()
    page.get_by_test_id("project").filter(has_text=name).wait_for()
    page.get_by_test_id("prompt").wait_for()


def send(page: Any, text: str) -> Any:
    """Type a prompt and press Enter; the newest assistant message."""
    before = page.locator('[data-testid="message"][data-role="ASSISTANT"]').count()
    page.get_by_test_id("prompt").fill(text)
    page.get_by_test_id("prompt").press("Enter")
    answer = page.locator('[data-testid="message"][data-role="ASSISTANT"]').nth(before)
    answer.wait_for()
    return answer


def wait_status(message: Any, status: str) -> None:
    message.and_(message.page.locator(f'[data-status="{status}"]')).wait_for()


def frame_text(page: Any, selector: str, text: str) -> None:
    page.frame_locator('[data-testid="preview"]').locator(selector).filter(has_text=text).wait_for()


def calls(*tool_calls: ToolCall, text: str = "") -> Reply:
    return Reply(text, tool_calls=list(tool_calls))


def finish(title: str) -> Reply:
    return Reply(" Done.", tool_calls=[ToolCall("finish", {"title": title, "summary": title})])


def test_build_an_app_iterate_and_restore_in_the_browser(
    page: Any, server: str, api: Api, llm: Any
) -> None:
    sign_in(page, server, api)
    page.get_by_text("No projects yet").wait_for()  # an empty state that says what to do
    create_project(page, "Greeting")
    page.get_by_text("No messages yet").wait_for()

    llm.script(
        calls(
            ToolCall("write_file", {"path": "index.html", "content": PAGE_V1}),
            ToolCall("write_file", {"path": "app.js", "content": APP_JS}),
            ToolCall("write_file", {"path": "style.css", "content": STYLE}),
            text="Building a greeting page.",
        ),
        finish("Greeting page"),
    )
    answer = send(page, "Build a greeting page")
    wait_status(answer, "COMPLETE")
    message_id = answer.get_attribute("data-id")
    assert answer.get_by_test_id("content").inner_text() == api.message(message_id)["content"]
    steps = answer.get_by_test_id("step")
    assert steps.count() == 4  # three write_file calls and finish, as collapsible steps
    assert steps.nth(0).evaluate("d => d.tagName") == "DETAILS"
    steps.nth(0).locator("summary").click()
    assert "index.html" in steps.nth(0).locator(".args").inner_text()
    page.get_by_test_id("version").filter(has_text="v1").wait_for()
    frame_text(page, "#greeting", "Hello from v1")
    frame_text(page, "#js", "scripts run")  # the sandboxed preview runs its own scripts
    assert page.get_by_test_id("stop").is_hidden()
    shot(page, "1-first-version")

    llm.script(
        calls(
            ToolCall(
                "edit_file", {"path": "index.html", "old": "Hello from v1", "new": "Hello from v2"}
            )
        ),
        finish("Greeting v2"),
    )
    follow_up = send(page, "Change the greeting")
    wait_status(follow_up, "COMPLETE")
    page.locator('[data-testid="version"][data-version="2"]').wait_for()
    frame_text(page, "#greeting", "Hello from v2")
    index = page.locator('[data-testid="file"][data-path="index.html"]')
    index.locator("summary").click()
    assert "+" in index.get_by_test_id("diff").inner_text()
    assert "Hello from v2" in index.get_by_test_id("diff").inner_text()
    page.get_by_test_id("credits").filter(has_text="3 credits").wait_for()
    shot(page, "2-follow-up")

    page.locator('[data-testid="version"][data-version="1"]').get_by_test_id("restore").click()
    page.locator('[data-testid="version"][data-version="3"]').wait_for()
    frame_text(page, "#greeting", "Hello from v1")
    restored = page.locator('[data-testid="message"][data-role="ASSISTANT"]').nth(2)
    assert restored.get_attribute("data-status") == "COMPLETE"
    # Bringing a preview back gives the served preview again, and it still renders.
    page.get_by_test_id("revive").click()
    frame_text(page, "#greeting", "Hello from v1")
    shot(page, "3-restored")

    # After a reload the page, signed in from sessionStorage, shows the same conversation.
    page.reload()
    page.get_by_test_id("message").nth(4).wait_for()
    assert page.get_by_test_id("message").count() == 5  # two turns of two, and the restore
    page.locator('[data-testid="version"][data-version="3"]').wait_for()
    assert page.get_by_test_id("version").count() == 3
    frame_text(page, "#greeting", "Hello from v1")


def test_stop_a_slow_run_and_it_ends_cancelled(page: Any, server: str, api: Api, llm: Any) -> None:
    sign_in(page, server, api)
    create_project(page, "Slow")
    llm.script(Reply("word " * 400, chunk_size=5, delay=0.05))
    answer = send(page, "Write a long essay")
    answer.get_by_test_id("content").filter(has_text="word").wait_for()
    stop = page.get_by_test_id("stop")
    assert stop.is_visible()
    shot(page, "4-streaming")
    stop.click()
    wait_status(answer, "CANCELLED")
    assert api.message(answer.get_attribute("data-id"))["status"] == "CANCELLED"
    page.get_by_test_id("stop").wait_for(state="hidden")
    assert page.get_by_test_id("send").is_enabled()


def test_an_error_the_api_answers_is_shown_in_words(
    page: Any, server: str, api: Api, db: Any
) -> None:
    page.goto(server + "/")
    page.get_by_test_id("token-input").fill(api.token)  # the pasted-token way in
    page.get_by_test_id("sign-in").click()
    create_project(page, "Broke")
    with transaction(db) as session:
        accounts.set_credits(session, api.user_id, 0, 5)
    page.get_by_test_id("prompt").fill("Build a to-do list app")
    page.get_by_test_id("send").click()
    alert = page.get_by_test_id("error")
    alert.filter(has_text="run out of credits").wait_for()
    assert "nothing was charged" in alert.inner_text()
    assert page.get_by_test_id("message").count() == 0
    assert page.get_by_test_id("prompt").input_value() == "Build a to-do list app"  # kept
    shot(page, "5-out-of-credits")
    # The other answers the API gives, in the page's own words (its module, in this browser).
    said = page.evaluate(
        """async () => {
            const { ApiError, words } = await import("/static/api.js");
            return [[403, "Image uploads require the Pro plan"], [409, "busy"], [429, "x", "7"],
                    [503, "The event store is unavailable"]].map(
                ([status, error, retry]) => words(new ApiError(status, { error }, retry)));
        }"""
    )
    assert said[0] == "Image uploads require the Pro plan. Nothing was sent."
    assert "already being processed" in said[1] and "press Stop" in said[1]
    assert said[2] == "Too many requests: try again in 7 seconds."
    assert "unavailable" in said[3] and "no credit was spent" in said[3]


def test_a_dropped_connection_resumes_without_a_gap(
    page: Any, server: str, api: Api, llm: Any
) -> None:
    port = int(server.rsplit(":", 1)[1])
    words = "".join(f"w{i} " for i in range(240))
    with TcpProxy("127.0.0.1", port) as proxy:
        sign_in(page, f"http://127.0.0.1:{proxy.port}", api)
        create_project(page, "Flaky")
        llm.script(Reply(words, chunk_size=6, delay=0.03))
        answer = send(page, "Write many words")
        content = answer.get_by_test_id("content")
        content.filter(has_text="w3 ").wait_for()
        for _ in range(2):  # dropped twice while the text streams
            assert answer.get_attribute("data-status") == "STREAMING"
            proxy.cut()
            page.wait_for_timeout(300)
            proxy.resume()
            shown = len(content.inner_text())
            page.wait_for_function(
                "([el, n]) => el.textContent.length > n + 30", arg=[content.element_handle(), shown]
            )
        wait_status(answer, "COMPLETE")
    final = api.message(answer.get_attribute("data-id"))
    assert final["content"] == words
    # No text missing, none twice: the text the page holds (it renders it as markdown).
    assert content.get_attribute("data-markdown") == words
    assert content.inner_text() == words.strip()
    resumed = [u for u in page.urls if "/events?" in u and "lastEventId=" in u]
    assert len(resumed) >= 2, page.urls


def test_the_page_fits_a_phone_390_px_wide(page: Any, server: str, api: Api, llm: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, server, api)
    create_project(page, "A project with a rather long name that must wrap on a phone")
    llm.script(
        calls(
            ToolCall("write_file", {"path": "index.html", "content": PAGE_V1 + "x" * 300}),
            text="A-very-long-unbroken-word-" * 12,
        ),
        finish("Phone"),
    )
    answer = send(page, "Build a page")
    wait_status(answer, "COMPLETE")
    answer.get_by_test_id("step").nth(0).locator("summary").click()
    frame_text(page, "#greeting", "Hello from v1")
    page.locator('[data-testid="file"]').nth(0).locator("summary").click()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"horizontal overflow: {width}px"
    # Focus is visible (the prompt was sent with Enter above).
    page.get_by_test_id("prompt").focus()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    shot(page, "6-phone")
    assert re.search(r"\d+ credits?", page.get_by_test_id("credits").inner_text())


def test_a_newcomer_opens_the_link_scripts_run_prints_and_the_demo_builds_an_app(
    browser: Any,
) -> None:
    """`orchestrator dev` (what `scripts/run` runs) as a newcomer has it: no keys, no database,
    no Redis, no secret; its printed link signs in, and the offline demo builds a to-do app."""
    home = tempfile.mkdtemp(prefix="appforge-dev-")
    os.chmod(home, 0o755)  # sandbox users must reach the workspaces under it
    SANDBOX_ROOTS.append(f"{home}/.data/sandboxes")
    # The printed link and the previews name PUBLIC_URL, made from PORT before gunicorn binds
    # it: a port outside the ephemeral range (free_port), which nothing takes by chance.
    port = free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin')}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "DATA_DIR": f"{home}/.data",  # a fresh clone's, not this checkout's
        "PORT": str(port),
        "WEB_WORKERS": "1",
        "WORKER_CONCURRENCY": "1",
        "SANDBOX_ISOLATION": "best-effort",  # as scripts/run sets it where bubblewrap is missing
        # The static demo app: the built React app is tests/test_framework_builds.py's.
        "SANDBOX_TEMPLATES": "off",
    }
    dev = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "dev"],
        cwd=Path(__file__).resolve().parent.parent,  # scripts/run runs it from the repository
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(dev.stdout.readline, "")))
    reader.daemon = True
    reader.start()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(60_000)
    try:
        link = wait_for(
            lambda: next(
                (
                    line.split(": ", 1)[1].strip()
                    for line in list(output)
                    if line.startswith("sign in as 'demo': ")
                ),
                None,
            ),
            60,
            "the sign-in link",
        )
        assert link.startswith(f"http://127.0.0.1:{port}/#token=")
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), 60, "the web process")
        page = context.new_page()
        page.goto(link)
        page.get_by_test_id("credits").filter(has_text="5 credits").wait_for()
        create_project(page, "Todo", "NEXTJS")
        answer = send(page, "Build a to-do list app")
        wait_status(answer, "COMPLETE")
        page.frame_locator('[data-testid="preview"]').get_by_text("To-Do").first.wait_for()
        assert "#token=" not in page.url
        shot(page, "7-dev-mode-demo")
    finally:
        context.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(dev.pid, signal.SIGTERM)  # it stops honcho, which stops every line
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(dev.pid, signal.SIGKILL)
            dev.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def _answers(url: str) -> bool:
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


def test_older_messages_load_above_the_newest_page(
    page: Any, server: str, api: Api, llm: Any
) -> None:
    project = api.project("Long")
    llm.script(
        calls(ToolCall("write_file", {"path": "index.html", "content": PAGE_V1})), finish("One")
    )
    sent = api.send(project["id"], "Build a page").json()
    assert api.wait_terminal(sent["messageId"])["status"] == "COMPLETE"
    first = api.get(f"/api/projects/{project['id']}/versions").json()[0]
    for _ in range(50):  # a restore adds a message and needs no model: a long conversation fast
        assert api.post(f"/api/fragments/{first['id']}/restore", json={}).status_code == 201
    listed = api.get("/api/messages", params={"projectId": project["id"]})
    assert len(listed.json()) == 50 and listed.headers["X-Prev-Cursor"], listed.headers
    sign_in(page, server, api)
    page.get_by_test_id("project").filter(has_text="Long").click()
    page.get_by_test_id("message").nth(49).wait_for()
    assert page.get_by_test_id("message").count() == 50  # the newest page
    page.get_by_test_id("older").click()
    page.get_by_test_id("message").nth(51).wait_for()
    assert page.get_by_test_id("message").first.get_attribute("data-role") == "USER"
    assert page.get_by_test_id("message").first.inner_text().endswith("Build a page")
    assert page.get_by_test_id("older").is_hidden()
    # Both pages were asked for with the fragments' paths, not their files (README, API notes).
    listings = [u for u in page.urls if "/api/messages?" in u]
    assert len(listings) >= 2 and all("fragmentFiles=paths" in u for u in listings), listings


def test_import_a_repository_download_publish_and_unpublish_in_the_browser(
    page: Any, server: str, api: Api, git_server: Any, tmp_path: Path
) -> None:
    import io
    import uuid
    import zipfile

    import httpx

    repo = f"page-{uuid.uuid4().hex[:8]}"
    token = f"ghp_{uuid.uuid4().hex}"
    git_server.private[repo] = token
    files = {"index.html": PAGE_V1, "app.js": APP_JS, "style.css": STYLE}
    git_server.repository(repo, {path: text.encode() for path, text in files.items()})
    sign_in(page, server, api)
    page.locator("details.import summary").click()
    page.get_by_test_id("project-name").fill("From a repository")
    page.get_by_test_id("repo-url").fill(git_server.url(repo))
    page.get_by_test_id("repo-token").fill(token)
    page.get_by_test_id("import-repo").click()
    page.locator('[data-testid="import-status"][data-status="COMPLETE"]').wait_for()
    assert page.get_by_test_id("repo-token").input_value() == ""  # used once, not kept
    page.locator('[data-testid="version"][data-version="1"]').wait_for()
    frame_text(page, "#greeting", "Hello from v1")
    shot(page, "4-imported")

    with page.expect_download() as started:
        page.get_by_test_id("download").click()
    saved = tmp_path / "app.zip"
    started.value.save_as(saved)
    with zipfile.ZipFile(io.BytesIO(saved.read_bytes())) as archive:
        assert {n: archive.read(n).decode() for n in archive.namelist()} == files

    page.get_by_test_id("publish").click()
    link = page.get_by_test_id("published-url")
    link.wait_for()
    url = link.inner_text()
    assert url.startswith(f"{server}/apps/") and link.get_attribute("href") == url
    assert httpx.get(url).text == PAGE_V1
    shot(page, "5-published")
    page.get_by_test_id("unpublish").click()
    link.wait_for(state="hidden")
    assert httpx.get(url).status_code == 404
    assert token not in "\n".join(page.urls)


MARKDOWN_REPLY = (
    "# To-Do List App\n\nWhat it has:\n\n- add a task\n- **tick** it off\n\n"
    "```js\nconst tasks = [];\n```\n\nSee [the docs](https://example.com/docs).\n\n"
    '<img src="x" onerror="window.__ran = \'img\'"><script>window.__ran = "script"</script>\n'
)


def test_the_answer_is_rendered_markdown_and_its_html_runs_nothing(
    page: Any, server: str, api: Api, llm: Any
) -> None:
    # Without the page's CSP too: the sanitiser alone must keep the model's HTML from running.
    def without_csp(route: Any) -> None:
        response = route.fetch()
        headers = {k: v for k, v in response.headers.items() if k != "content-security-policy"}
        route.fulfill(response=response, headers=headers)

    page.route(f"{server}/", without_csp)
    sign_in(page, server, api)
    create_project(page, "Markdown")
    llm.script(Reply(MARKDOWN_REPLY, chunk_size=7), finish("Markdown"))
    answer = send(page, "Build a **to-do** list app")
    wait_status(answer, "COMPLETE")
    for content in (answer.get_by_test_id("content"), None):
        if content is None:  # the same answer, loaded from the listing after a reload
            page.reload()
            page.get_by_test_id("project").filter(has_text="Markdown").click()
            content = page.locator('[data-role="ASSISTANT"] [data-testid="content"]')
            content.locator("h1").wait_for()
        assert content.locator("h1").inner_text() == "To-Do List App"
        assert content.locator("script, [onerror]").count() == 0
        assert page.evaluate("window.__ran") is None
        assert content.locator("li").all_inner_texts() == ["add a task", "tick it off"]
        assert content.locator("li strong").inner_text() == "tick"
        assert content.locator("pre code").inner_text().strip() == "const tasks = [];"
        link = content.locator("a")
        assert link.get_attribute("href") == "https://example.com/docs"
        assert "noopener" in (link.get_attribute("rel") or "")
    user = page.locator('[data-role="USER"] [data-testid="content"]')
    assert user.inner_text() == "Build a **to-do** list app"  # the user's words, as typed
    shot(page, "markdown")
