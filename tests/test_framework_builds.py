"""The local sandbox builds a framework app offline: runs on the prepared React template.

Runs go through the runner the worker uses (`running_stack`: real services, the real local
sandbox, the fake model over HTTP); previews are fetched from the session's real HTTP server.
The React template is prepared once per machine into a cache folder (`templates_dir`), so the
suite pays `npm ci` at most once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandboxes.local_process import BUBBLEWRAP
from orchestrator.sandboxes.prepare import prepare
from orchestrator.sandboxes.templates import STARTERS, TemplateStore
from orchestrator.settings import Settings
from orchestrator.tokens import user_token
from tests.conftest import (
    SECRET,
    prepared_templates,
    run_prompt,
    running_stack,
    unavailable,
    wait_for,
)
from tests.fakes.llm_server import FakeLLM, Reply, ToolCall

Stack = tuple[Any, Callable[[str, str], Any]]

COMPONENT = """export default function App() {
  return <main><h1>Hello from the component</h1></main>
}
"""
BROKEN = """export default function App() {
  return <main><h1>Unclosed</main>
}
"""
BUILD = ToolCall("run_command", {"command": "npm run build", "timeout": 180})


@pytest.fixture(scope="session")
def templates_dir() -> Path:
    return prepared_templates("react")


@pytest.fixture(scope="module")
def stack(settings: Settings, templates_dir: Path) -> Iterator[Stack]:
    with running_stack(
        settings.model_copy(update=dict(sandbox_templates=str(templates_dir)))
    ) as running:
        yield running


def calls(*tool_calls: ToolCall) -> Reply:
    return Reply("", tool_calls=list(tool_calls))


def write_app(content: str) -> Reply:
    return calls(ToolCall("write_file", {"path": "src/App.jsx", "content": content}))


def written_and_built(content: str) -> list[Reply]:
    """A model that writes its component, builds it, and finishes."""
    return [write_app(content), calls(BUILD), finish()]


def finish() -> Reply:
    return Reply("Done.", tool_calls=[ToolCall("finish", {"title": "App", "summary": "s"})])


def fetch(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read().decode()
        return response.status, response.headers.get("Content-Type", ""), body


def tool_results(llm: FakeLLM) -> list[dict[str, Any]]:
    """What the model was sent back for its tool calls, in the last request it got."""
    messages = llm.requests[-1]["messages"]
    return [json.loads(m["content"]) for m in messages if m["role"] == "tool"]


def test_a_scripted_run_builds_a_react_component_and_the_preview_serves_the_built_app(
    stack: Stack, llm: FakeLLM, server: str
) -> None:
    llm.script(*written_and_built(COMPONENT))
    message, fragment = run_prompt(*stack, "Say hello", framework="REACT")
    assert message["status"] == "COMPLETE", message
    build = tool_results(llm)[-1]
    assert build["exitCode"] == 0, build
    # The version is the template's sources with the change; no build output, no node_modules.
    assert fragment["files"]["src/App.jsx"] == COMPONENT
    assert {"index.html", "package.json", "src/main.jsx", "vite.config.js"} <= set(
        fragment["files"]
    )
    assert not [p for p in fragment["files"] if p.startswith(("dist/", "node_modules/"))]
    assert fragment["changes"] == {"added": [], "modified": ["src/App.jsx"], "deleted": []}
    assert fragment["metadata"]["build"] == {
        "status": "passed",
        "command": "npm run build",
        "exitCode": 0,
    }
    # The model built its last change: the worker does not build again.
    assert [c["id"] for c in message["toolCalls"]].count("final_build") == 0
    # The preview is the built page, and the script it names loads.
    status, kind, page = fetch(fragment["sandboxUrl"])
    assert status == 200 and kind.startswith("text/html")
    assert "/src/main.jsx" not in page
    script = re.search(r'<script type="module" crossorigin src="\./(assets/[^"]+\.js)"', page)
    assert script, page
    status, kind, code = fetch(fragment["sandboxUrl"] + script[1])
    assert status == 200 and kind.startswith(("text/javascript", "application/javascript"))
    assert "Hello from the component" in code
    assert fragment["sandboxUrl"].startswith(server)


def test_a_build_error_comes_back_to_the_model_and_the_fragment_records_it(
    stack: Stack, llm: FakeLLM, server: str
) -> None:
    llm.script(*written_and_built(BROKEN))
    message, fragment = run_prompt(*stack, "Break it", framework="REACT")
    assert message["status"] == "COMPLETE", message
    build = tool_results(llm)[-1]
    assert build["exitCode"] != 0
    output = build["stdout"] + build["stderr"]
    assert "src/App.jsx" in output and "Unclosed" in output  # the compiler's error, in words
    assert fragment["metadata"]["build"]["status"] == "failed"
    # The sources are those of the failed build: the worker does not run it again.
    assert [c["id"] for c in message["toolCalls"]].count("final_build") == 0
    # The preview says the build failed and shows why, instead of a blank page of sources.
    status, _, page = fetch(fragment["sandboxUrl"])
    assert status == 200 and "The build failed" in page, page
    assert "Unclosed" in page and "npm run build" in page


NEWER = COMPONENT.replace("Hello from the component", "Hello from the newer component")


def send_in(stack: Stack, headers: dict[str, str], project_id: str, text: str) -> Any:
    """One prompt to an existing project, run to its end: (message, fragment)."""
    client, execute = stack
    body = {"message": text, "projectId": project_id}
    sent = client.post("/api/messages", json=body, headers=headers).get_json()
    execute(sent["messageId"], sent["runId"])
    url = f"/api/messages/{sent['messageId']}"
    message = client.get(url, headers=headers).get_json()
    return message, client.get(f"{url}/fragment", headers=headers).get_json()


def built_script(fragment: dict[str, Any]) -> str:
    """The code of the built page's main script (its last; Angular's polyfills come first)."""
    _, _, page = fetch(fragment["sandboxUrl"])
    scripts = re.findall(r'<script[^>]*\bsrc="(?:\./)?([^"]+\.js)"', page)
    assert scripts, page
    return fetch(fragment["sandboxUrl"] + scripts[-1])[2]


def test_a_follow_up_the_model_left_unbuilt_is_built_by_the_worker_as_a_step(
    stack: Stack, llm: FakeLLM, server: str
) -> None:
    client, _ = stack
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'unbuilt-{os.getpid()}')}"}
    project = client.post(
        "/api/projects", json={"name": "p", "framework": "REACT"}, headers=headers
    ).get_json()
    llm.script(*written_and_built(COMPONENT))
    message, one = send_in(stack, headers, project["id"], "Say hello")
    assert message["status"] == "COMPLETE", message
    # The follow-up changes the component and finishes without building it.
    llm.script(write_app(NEWER), finish())
    asked = len(llm.requests)
    message, two = send_in(stack, headers, project["id"], "Say it newer")
    assert message["status"] == "COMPLETE", message
    assert len(llm.requests) - asked == 2  # the model was not asked again
    build = message["toolCalls"][-1]
    assert build["id"] == "final_build" and build["name"] == "run_command", build
    assert build["args"]["command"] == "npm run build"
    assert build["result"]["exitCode"] == 0, build
    assert two["metadata"]["build"] == {
        "status": "passed",
        "command": "npm run build",
        "exitCode": 0,
        "by": "worker",
    }
    assert two["parentId"] == one["id"]
    assert "Hello from the newer component" in built_script(two)
    assert "Hello from the newer component" not in built_script(one)


def built_then_changed_to(content: str) -> list[Reply]:
    """A model that builds its component, then writes it again and finishes without building."""
    return [write_app(COMPONENT), calls(BUILD), write_app(content), finish()]


def test_a_change_after_the_models_last_build_is_built_again(
    stack: Stack, llm: FakeLLM, server: str
) -> None:
    llm.script(*built_then_changed_to(NEWER))
    message, fragment = run_prompt(*stack, "Say hello, then newer", framework="REACT")
    assert message["status"] == "COMPLETE", message
    assert [c["id"] for c in message["toolCalls"]][-1] == "final_build"
    assert fragment["metadata"]["build"]["by"] == "worker"
    # The preview is the build of the sources the version holds, not the model's earlier one.
    assert "Hello from the newer component" in built_script(fragment)


def test_a_broken_change_the_model_left_unbuilt_previews_as_the_builds_error(
    stack: Stack, llm: FakeLLM, server: str
) -> None:
    llm.script(*built_then_changed_to(BROKEN))
    message, fragment = run_prompt(*stack, "Break it quietly", framework="REACT")
    assert message["status"] == "COMPLETE", message
    assert message["toolCalls"][-1]["result"]["exitCode"] != 0
    assert fragment["metadata"]["build"]["status"] == "failed"
    # Never the output the model's earlier, passing build left in the workspace.
    status, _, page = fetch(fragment["sandboxUrl"])
    assert "The build failed" in page and "Unclosed" in page, page


def test_the_build_has_no_network(stack: Stack, llm: FakeLLM) -> None:
    probe = (
        f"fetch('{llm.base_url}').then(() => console.log('NETWORK REACHED'))"
        ".catch((e) => console.log('no network:', e.cause && e.cause.code))"
    )
    package = json.loads((STARTERS / "react" / "app" / "package.json").read_text())
    package["scripts"]["build"] = "node probe.mjs && vite build"
    llm.script(
        calls(
            ToolCall("write_file", {"path": "probe.mjs", "content": f"await {probe}\n"}),
            ToolCall("write_file", {"path": "package.json", "content": json.dumps(package)}),
        ),
        calls(BUILD),
        finish(),
    )
    message, fragment = run_prompt(*stack, "Phone home", framework="REACT")
    assert message["status"] == "COMPLETE", message
    if fragment["metadata"]["sandbox"]["isolation"] != BUBBLEWRAP:
        unavailable("bubblewrap cannot run here: without it sandbox commands have the network")
    build = tool_results(llm)[-1]
    # The fake model's server listens on this machine, yet the build cannot reach it.
    assert "no network:" in build["stdout"], build
    assert "NETWORK REACHED" not in build["stdout"]
    assert build["exitCode"] == 0 and fragment["metadata"]["build"]["status"] == "passed"


@pytest.fixture
def no_templates() -> Iterator[Path]:
    """An empty templates folder that sandbox users can reach (pytest's own folders are private,
    and a worker refuses a templates folder out of their reach: tests/test_sandbox_places.py)."""
    empty = Path(tempfile.mkdtemp(prefix="appforge-no-templates-"))
    empty.chmod(0o755)
    yield empty
    shutil.rmtree(empty, ignore_errors=True)


def test_a_run_for_an_unprepared_framework_fails_in_words_and_takes_no_credit(
    settings: Settings, llm: FakeLLM, no_templates: Path
) -> None:
    """A template gone after the worker started (its start-up prepares what is missing): the run
    fails before the model is asked anything."""
    empty = no_templates
    with running_stack(settings.model_copy(update=dict(sandbox_templates=str(empty)))) as (
        client,
        execute,
    ):
        headers = {"Authorization": f"Bearer {user_token(SECRET, f'unprepared-{empty.name}')}"}
        project = client.post(
            "/api/projects", json={"name": "p", "framework": "REACT"}, headers=headers
        ).get_json()
        sent = client.post(
            "/api/messages",
            json={"message": "Build it", "projectId": project["id"]},
            headers=headers,
        ).get_json()
        assert client.get("/api/me", headers=headers).get_json()["credits"] == 4  # taken
        execute(sent["messageId"], sent["runId"])
        message = client.get(f"/api/messages/{sent['messageId']}", headers=headers).get_json()
        assert message["status"] == "FAILED"
        assert "`orchestrator sandbox prepare react`" in message["content"], message
        assert "credit was refunded" in message["content"]
        assert client.get("/api/me", headers=headers).get_json()["credits"] == 5  # given back
        assert llm.requests == []  # it failed before the model was asked anything


def test_the_offline_demo_builds_a_react_app_a_newcomer_sees_built(
    settings: Settings, templates_dir: Path, server: str
) -> None:
    demo = settings.model_copy(update=dict(providers=(), sandbox_templates=str(templates_dir)))
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'newcomer-{os.getpid()}')}"}
    with running_stack(demo) as (client, execute):
        project = client.post(
            "/api/projects", json={"name": "Todo", "framework": "REACT"}, headers=headers
        ).get_json()

        def send(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
            body = {"message": text, "projectId": project["id"]}
            sent = client.post("/api/messages", json=body, headers=headers).get_json()
            execute(sent["messageId"], sent["runId"])
            url = f"/api/messages/{sent['messageId']}"
            message = client.get(url, headers=headers).get_json()
            return message, client.get(f"{url}/fragment", headers=headers).get_json()

        message, fragment = send("Build a to-do list app")
        assert message["status"] == "COMPLETE", message
        assert "the build passed" in message["content"]
        # The demo built its last change: the worker does not build it a second time.
        assert "final_build" not in [c["id"] for c in message["toolCalls"]]
        assert "To-Do List App" in fragment["files"]["src/App.jsx"]
        assert fragment["metadata"]["build"]["status"] == "passed"
        _, _, page = fetch(fragment["sandboxUrl"])
        script = re.search(r'src="\./(assets/[^"]+\.js)"', page)
        assert script, page
        _, _, code = fetch(fragment["sandboxUrl"] + script[1])
        assert "To-Do List App" in code and "<h1>" not in code  # compiled JSX, not the source

        # A follow-up edits the component it wrote and builds again.
        message, two = send("Now add a dark mode toggle")
        assert message["status"] == "COMPLETE", message
        assert two["changes"]["modified"] == ["src/App.jsx"], two["changes"]
        assert "Now add a dark mode toggle" in two["files"]["src/App.jsx"]
        assert two["metadata"]["build"]["status"] == "passed"
        _, _, page = fetch(two["sandboxUrl"])
        script = re.search(r'src="\./(assets/[^"]+\.js)"', page)
        assert script, page
        _, _, code = fetch(two["sandboxUrl"] + script[1])
        assert "Now add a dark mode toggle" in code


@pytest.mark.parametrize("framework", ["VUE", "SVELTE", "ANGULAR"])
def test_the_offline_demo_previews_a_built_app_on_the_other_frameworks(
    settings: Settings, templates_dir: Path, server: str, framework: str
) -> None:
    """Vue and Svelte get the demo's page, which Vite builds; Angular its root component."""
    prepare(TemplateStore(templates_dir), framework.lower())
    demo = settings.model_copy(update=dict(providers=(), sandbox_templates=str(templates_dir)))
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'demo-{framework}-{os.getpid()}')}"}
    with running_stack(demo) as stack:
        project = (
            stack[0]
            .post("/api/projects", json={"name": "Todo", "framework": framework}, headers=headers)
            .get_json()
        )
        message, one = send_in(stack, headers, project["id"], "Build a to-do list app")
        assert message["status"] == "COMPLETE", message
        assert one["metadata"]["build"]["status"] == "passed", one["metadata"]
        _, _, page = fetch(one["sandboxUrl"])
        assert "/src/main" not in page and "app.js" not in page, page  # built, not the sources
        code = built_script(one)
        if framework == "ANGULAR":
            assert "To-Do List App" in code and "@for" not in code  # the compiled component
        else:
            assert "To-Do List App" in page and "item-input" in code  # the page's script, bundled
        message, two = send_in(stack, headers, project["id"], "Now add a dark mode toggle")
        assert message["status"] == "COMPLETE", message
        assert two["metadata"]["build"]["status"] == "passed", two["metadata"]
        if framework == "ANGULAR":
            assert "Now add a dark mode toggle" in built_script(two)


@pytest.mark.timeout(900)  # the first session on a machine prepares all five templates
def test_prepare_is_idempotent_and_the_worker_says_what_is_ready(
    all_templates: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.wiring.cli import main
    from orchestrator.wiring.worker_start import check_worker_sandboxes

    templates_dir = all_templates
    again = prepare(TemplateStore(templates_dir), "react")
    assert not again.installed  # the stamp matches the lock: nothing installed
    monkeypatch.chdir(templates_dir.parent)  # a relative folder, as DATA_DIR=.data gives
    relative = TemplateStore(Path(templates_dir.name)).require("react")
    assert relative.node_modules.is_absolute() and relative.node_modules.is_dir()
    settings = Settings.from_env({"SANDBOX_TEMPLATES": str(templates_dir)})
    with caplog.at_level("INFO", logger="orchestrator.wiring.worker_start"):
        check_worker_sandboxes(settings.model_copy(update=dict(sandbox_isolation="best-effort")))
    said = " ".join(record.getMessage() for record in caplog.records)
    assert "framework templates ready: react, vue, svelte, nextjs, angular" in said
    assert "installing" not in said  # nothing was missing
    monkeypatch.setenv("SANDBOX_TEMPLATES", str(templates_dir))
    assert main(["sandbox", "prepare", "react"]) == 0
    assert main(["sandbox", "prepare", "cobol"]) == 1


def test_a_restored_built_version_serves_its_build(stack: Stack, llm: FakeLLM, server: str) -> None:
    client, execute = stack
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'restorer-{os.getpid()}')}"}
    project = client.post(
        "/api/projects", json={"name": "p", "framework": "REACT"}, headers=headers
    ).get_json()
    llm.script(*written_and_built(COMPONENT))
    body = {"message": "Say hello", "projectId": project["id"]}
    sent = client.post("/api/messages", json=body, headers=headers).get_json()
    execute(sent["messageId"], sent["runId"])
    one = client.get(f"/api/messages/{sent['messageId']}/fragment", headers=headers).get_json()
    restored = client.post(
        f"/api/fragments/{one['id']}/restore", json={}, headers=headers
    ).get_json()["fragment"]
    _, _, page = fetch(restored["sandboxUrl"])
    assert "/src/main.jsx" not in page and 'src="./assets/' in page  # the build, not the sources
    assert restored["metadata"]["build"] == one["metadata"]["build"]  # and what built it
    assert restored["metadata"]["build"]["status"] == "passed"


def test_a_cancel_during_the_workers_build_stops_it(stack: Stack, llm: FakeLLM) -> None:
    client, execute = stack
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'cancel-build-{os.getpid()}')}"}
    project = client.post(
        "/api/projects", json={"name": "p", "framework": "REACT"}, headers=headers
    ).get_json()
    package = json.loads((STARTERS / "react" / "app" / "package.json").read_text())
    package["scripts"]["build"] = "sleep 60 && vite build"  # a build that takes a minute
    llm.script(
        calls(ToolCall("write_file", {"path": "package.json", "content": json.dumps(package)})),
        finish(),
    )
    body = {"message": "Slow build", "projectId": project["id"]}
    sent = client.post("/api/messages", json=body, headers=headers).get_json()
    url = f"/api/messages/{sent['messageId']}"
    ended: list[Any] = []
    runner = threading.Thread(
        target=lambda: ended.append(execute(sent["messageId"], sent["runId"]))
    )
    runner.start()
    try:
        wait_for(
            lambda: any(
                c["id"] == "final_build"
                for c in client.get(url, headers=headers).get_json()["toolCalls"]
            ),
            timeout=30,
            what="the worker's build to start",
        )
        assert client.delete(url, headers=headers).status_code == 200
        runner.join(timeout=20)
        assert not runner.is_alive(), "the run went on building after the cancel"
    finally:
        runner.join(timeout=70)
    assert ended == ["CANCELLED"]
    message = client.get(url, headers=headers).get_json()
    assert message["status"] == "CANCELLED"
    assert client.get(f"{url}/fragment", headers=headers).get_json() is None  # no version


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, as tests/test_web_page.py drives it."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        unavailable("no Chromium: install the Debian package chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_the_built_app_runs_in_a_browser_on_the_previews_opaque_origin(
    stack: Stack, llm: FakeLLM, browser: Any, server: str
) -> None:
    """The preview's sandbox policy gives its page an opaque origin, from which a module script
    (what Vite and Angular emit) loads only if its response allows that origin (CORS)."""
    llm.script(*written_and_built(COMPONENT))
    message, fragment = run_prompt(*stack, "Say hello", framework="REACT")
    assert message["status"] == "COMPLETE", message
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda entry: errors.append(entry.text))
        page.goto(fragment["sandboxUrl"])
        heading = page.locator("h1")
        heading.wait_for(timeout=15_000)
        assert heading.text_content() == "Hello from the component", errors
    finally:
        context.close()


def test_a_first_versions_files_show_its_changes_against_the_template_as_its_badge_does(
    stack: Stack, llm: FakeLLM, browser: Any, server: str
) -> None:
    """A new project starts from its template: its first version changed src/App.jsx only. The
    version's `changes`, its badge, the diff endpoint and the page's files pane all say so."""
    client, _ = stack
    user = f"first-version-{os.getpid()}-{threading.get_ident()}"
    headers = {"Authorization": f"Bearer {user_token(SECRET, user)}"}
    project = client.post(
        "/api/projects", json={"name": "From the template", "framework": "REACT"}, headers=headers
    ).get_json()
    llm.script(*written_and_built(COMPONENT))
    message, fragment = send_in(stack, headers, project["id"], "Say hello")
    assert message["status"] == "COMPLETE", message
    assert fragment["changes"] == {"added": [], "modified": ["src/App.jsx"], "deleted": []}

    diff = client.get(f"/api/fragments/{fragment['id']}/diff", headers=headers).get_json()
    assert [(f["path"], f["change"]) for f in diff["files"]] == [("src/App.jsx", "modified")]
    template = (STARTERS / "react" / "app" / "src" / "App.jsx").read_text()
    assert diff["files"][0]["diff"].startswith("--- a/src/App.jsx\n+++ b/src/App.jsx\n")
    removed = [line[1:] for line in diff["files"][0]["diff"].splitlines() if line[:1] == "-"]
    assert template.splitlines()[0] in removed  # against the template's file, not nothing

    # The session's web server reads the same database: the page as the project's owner sees it.
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        page = context.new_page()
        page.goto(f"{server}/#token={user_token(SECRET, user)}")
        page.get_by_test_id("project").filter(has_text="From the template").click()
        version = page.get_by_test_id("version").first
        version.wait_for(timeout=15_000)
        assert "+0 ~1 −0" in version.inner_text()  # the badge
        files = page.get_by_test_id("file")
        files.filter(has_text="src/App.jsx").wait_for(timeout=15_000)
        marks = {
            files.nth(i).get_attribute("data-path"): files.nth(i)
            .locator(".change")
            .all_inner_texts()
            for i in range(files.count())
        }
        assert set(marks) == set(fragment["files"])  # every file of the version is listed
        assert {path: mark for path, mark in marks.items() if mark} == {"src/App.jsx": ["modified"]}
    finally:
        context.close()
