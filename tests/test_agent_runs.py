"""Full runs of the code agent: a scripted model, a real worker, the local sandbox, the preview."""

from __future__ import annotations

import time
from typing import Any

import httpx

from orchestrator.settings import Settings
from tests.conftest import Api, run_prompt, running_stack
from tests.fakes.llm_server import Reply, ToolCall

PAGE = "<!doctype html><html><body><h1>To-do</h1><script src='app.js'></script></body></html>"


def finish(title: str = "To-Do App", summary: str = "A small to-do app.") -> Reply:
    return Reply("All done.", tool_calls=[ToolCall("finish", {"title": title, "summary": summary})])


def test_a_run_writes_files_runs_commands_and_ends_with_a_previewable_fragment(
    api: Api, llm: Any
) -> None:
    llm.script(
        Reply(
            "Building it now.",
            tool_calls=[
                ToolCall("write_file", {"path": "index.html", "content": PAGE}),
                ToolCall("write_file", {"path": "app.js", "content": "console.log('hi')"}),
            ],
        ),
        Reply("", tool_calls=[ToolCall("run_command", {"command": "ls && cat index.html"})]),
        Reply("", tool_calls=[ToolCall("read_file", {"path": "app.js"})]),
        Reply("", tool_calls=[ToolCall("list_files", {})]),
        finish(),
    )
    body = api.send(api.project()["id"], "Build a to-do list app").json()
    final = api.wait_terminal(body["messageId"])
    assert final["status"] == "COMPLETE", final
    assert final["content"] == "Building it now.All done."
    names = [call["name"] for call in final["toolCalls"]]
    assert names == ["write_file", "write_file", "run_command", "read_file", "list_files", "finish"]
    run = final["toolCalls"][2]
    assert run["result"]["exitCode"] == 0 and "To-do" in run["result"]["stdout"]
    assert run["result"]["truncated"] is False
    assert final["toolCalls"][3]["result"]["content"] == "console.log('hi')"
    assert sorted(final["toolCalls"][4]["result"]["files"]) == ["app.js", "index.html"]
    assert final["toolCalls"][0]["args"] == {"path": "index.html", "content": PAGE}

    fragment = api.get(f"/api/messages/{body['messageId']}/fragment").json()
    assert fragment["files"] == {"index.html": PAGE, "app.js": "console.log('hi')"}
    assert fragment["title"] == "To-Do App"
    assert fragment["metadata"]["summary"] == "A small to-do app."
    assert fragment["metadata"]["provider"] == "primary"
    assert fragment["framework"] == "NEXTJS"
    page = httpx.get(fragment["sandboxUrl"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == PAGE
    script = httpx.get(fragment["sandboxUrl"] + "app.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert httpx.get(fragment["sandboxUrl"] + "missing.css").status_code == 404
    listed = api.get("/api/messages", params={"projectId": body["projectId"]}).json()
    assert listed[1]["codeFragment"]["id"] == fragment["id"]


def test_escaping_paths_and_bad_calls_are_tool_errors_and_touch_nothing_outside(
    api: Api, llm: Any, tmp_path: Any
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    llm.script(
        Reply(
            "",
            tool_calls=[
                ToolCall("write_file", {"path": "../../etc/passwd", "content": "x"}),
                ToolCall("write_file", {"path": str(outside), "content": "x"}),
                ToolCall("run_command", {"command": f"ln -s {tmp_path} escape"}),
            ],
        ),
        Reply(
            "",
            tool_calls=[
                ToolCall("write_file", {"path": "escape/outside.txt", "content": "pwned"}),
                ToolCall("write_file", '{"path": "broken.html", "content": '),
                ToolCall("delete_everything", {}),
                ToolCall("write_file", {"path": 42}),
                ToolCall("finish", {"title": 7}),
            ],
        ),
        finish(),
    )
    final = api.wait_terminal(api.send(api.project()["id"]).json()["messageId"])
    assert final["status"] == "COMPLETE"
    results = {i: call["result"] for i, call in enumerate(final["toolCalls"])}
    for index in (0, 1, 3, 4, 5, 6, 7):
        assert "error" in results[index], (index, results[index])
    assert "unknown tool" in results[5]["error"]
    assert "JSON" in results[4]["error"]
    assert outside.read_text() == "untouched"
    assert api.get(f"/api/messages/{final['id']}/fragment").json() is None


def test_a_command_that_never_ends_is_cut_at_its_timeout(api: Api, llm: Any) -> None:
    llm.script(
        Reply("", tool_calls=[ToolCall("run_command", {"command": "sleep 600", "timeout": 1})]),
        finish(),
    )
    started = time.monotonic()
    final = api.wait_terminal(api.send(api.project()["id"]).json()["messageId"], timeout=30)
    assert time.monotonic() - started < 20
    result = final["toolCalls"][0]["result"]
    assert result["exitCode"] != 0 and result.get("timedOut") is True


def test_a_model_that_never_finishes_stops_at_the_step_limit(
    api: Api, llm: Any, settings: Settings
) -> None:
    llm.default = Reply("", tool_calls=[ToolCall("list_files", {})])
    try:
        final = api.wait_terminal(api.send(api.project()["id"]).json()["messageId"])
    finally:
        llm.default = Reply("Hello from the fake LLM.")
    assert final["status"] == "COMPLETE"
    assert len(llm.requests) == settings.agent_max_steps
    assert final["metadata"]["stopReason"] == "max_steps"
    assert final["metadata"]["steps"] == settings.agent_max_steps


def test_images_and_imports_reach_the_model(api: Api, llm: Any, db: Any) -> None:
    from models import Plan, User, transaction

    api.get("/api/me")
    with transaction(db) as session:
        user = session.get(User, api.user_id)
        user.plan = Plan.PRO
    body = api.send(
        api.project()["id"],
        "Make it look like this",
        imageUrl="https://cdn.test/shot.png",
        attachments=[
            {"url": "https://cdn.test/a.png", "size": 5},
            {
                "type": "GITHUB_REPO",
                "url": "https://github.com/o/r",
                "size": 0,
                "importId": "imp_1",
                "sourceMetadata": {"branch": "main"},
            },
        ],
    ).json()
    api.wait_terminal(body["messageId"])
    prompt = llm.requests[0]["messages"][-1]
    assert prompt["role"] == "user"
    parts = prompt["content"]
    images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert images == ["https://cdn.test/shot.png", "https://cdn.test/a.png"]
    text = next(p["text"] for p in parts if p["type"] == "text")
    assert "https://github.com/o/r" in text and "imp_1" in text and "main" in text
    assert llm.requests[0]["messages"][0]["role"] == "system"
    assert llm.requests[0]["tools"][0]["function"]["name"] == "write_file"


def test_history_reaches_the_model_before_the_new_prompt(api: Api, llm: Any) -> None:
    project = api.project()
    first = api.send(project["id"], "First question").json()
    api.wait_terminal(first["messageId"])
    second = api.send(project["id"], "Second question").json()
    api.wait_terminal(second["messageId"])
    roles = [(m["role"], m.get("content")) for m in llm.requests[-1]["messages"][1:]]
    assert roles == [
        ("user", "First question"),
        ("assistant", "Hello from the fake LLM."),
        ("user", "Second question"),
    ]


def test_the_offline_demo_builds_a_static_app_that_opens_in_the_preview(
    settings: Settings, worker: Any
) -> None:
    demo = settings.model_copy(update=dict(providers=()))
    with running_stack(demo) as (client, execute):
        final, fragment = run_prompt(client, execute, "Build a to-do list app")
        assert final["status"] == "COMPLETE", final
        assert final["metadata"]["provider"] == "demo"
        assert set(fragment["files"]) == {"index.html", "styles.css", "app.js"}
        assert fragment["title"] == "To-Do List App"
        path = fragment["sandboxUrl"].split("://", 1)[1].split("/", 1)[1]
        page = client.get("/" + path)
        assert page.status_code == 200 and b"To-Do List App" in page.data
        assert client.get("/" + path + "styles.css").content_type.startswith("text/css")


def test_a_nextjs_project_on_the_local_sandbox_is_told_to_build_static_files(
    api: Api, llm: Any
) -> None:
    # The local sandbox runs no dev server: a model told one runs writes .tsx nobody serves.
    project = api.project(framework="NEXTJS")
    api.wait_terminal(api.send(project["id"]).json()["messageId"])
    system = llm.requests[0]["messages"][0]
    assert system["role"] == "system"
    text = system["content"]
    assert "index.html" in text and "static files" in text
    assert "dev server" in text and "no dev server" in text  # only ever denied
    for claim in ("port 3000", "already runs", "app/page.tsx", "is started to preview"):
        assert claim not in text, claim
