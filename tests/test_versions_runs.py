"""Follow-up runs build on the app: through the real worker, the local sandbox, a scripted model."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.fakes.llm_server import Reply, ToolCall

PAGE = (
    "<!doctype html><html><head><link rel=stylesheet href=style.css></head><body>Hi</body></html>"
)
STYLE = "h1 { color: black; }\nbody { margin: 0; }\n"


def finish(title: str = "App") -> Reply:
    return Reply("Done.", tool_calls=[ToolCall("finish", {"title": title, "summary": "s"})])


def calls(*tool_calls: ToolCall) -> Reply:
    return Reply("", tool_calls=list(tool_calls))


def run(api: Api, llm: Any, project_id: str, *replies: Reply, prompt: str = "Do it") -> Any:
    llm.script(*replies)
    sent = api.send(project_id, prompt).json()
    final = api.wait_terminal(sent["messageId"])
    assert final["status"] == "COMPLETE", final
    return final, api.get(f"/api/messages/{sent['messageId']}/fragment").json()


def first_version(api: Api, llm: Any, project_id: str) -> Any:
    _, fragment = run(
        api,
        llm,
        project_id,
        calls(
            ToolCall("write_file", {"path": "index.html", "content": PAGE}),
            ToolCall("write_file", {"path": "style.css", "content": STYLE}),
        ),
        finish("Page"),
    )
    return fragment


def test_a_follow_up_edits_the_previous_version_and_its_fragment_is_the_whole_app(
    api: Api, llm: Any
) -> None:
    project = api.project()
    one = first_version(api, llm, project["id"])
    assert (one["version"], one["parentId"]) == (1, None)
    assert one["changes"] == {"added": ["index.html", "style.css"], "modified": [], "deleted": []}

    final, two = run(
        api,
        llm,
        project["id"],
        calls(ToolCall("read_file", {"path": "style.css"})),
        calls(ToolCall("write_file", {"path": "app.js", "content": "console.log(1)"})),
        finish("Page with script"),
        prompt="Now add a script",
    )
    assert final["toolCalls"][0]["result"]["content"] == STYLE  # the base is in the workspace
    assert two["files"] == {"index.html": PAGE, "style.css": STYLE, "app.js": "console.log(1)"}
    assert (two["version"], two["parentId"]) == (2, one["id"])
    assert two["changes"] == {"added": ["app.js"], "modified": [], "deleted": []}
    assert two["metadata"]["base"] == {"fragmentId": one["id"], "version": 1, "files": 2}
    assert two["metadata"]["sandbox"]["base"] == {"how": "written", "files": 2}
    # The first request names every path of the base with its size.
    system = llm.requests[-3]["messages"][0]["content"]
    assert f"- index.html ({len(PAGE)})" in system and f"- style.css ({len(STYLE)})" in system


def test_what_commands_change_is_in_the_version_and_links_and_blobs_are_not(
    api: Api, llm: Any, tmp_path: Any
) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("top secret")
    outside.chmod(0o755)
    project = api.project()
    one = first_version(api, llm, project["id"])
    script = (
        "rm style.css && echo hello > notes.txt && sed -i s/Hi/Hello/ index.html"
        " && mkdir -p node_modules/x dist && echo dep > node_modules/x/i.js && echo b > dist/b.js"
        f" && ln -s /etc/passwd passwd && ln -s {outside} secret"
        " && printf 'a\\000b' > blob.bin && head -c 3000000 /dev/zero | tr '\\0' a > big.txt"
    )
    final, two = run(
        api, llm, project["id"], calls(ToolCall("run_command", {"command": script})), finish()
    )
    assert final["toolCalls"][0]["result"]["exitCode"] == 0, final["toolCalls"][0]
    assert set(two["files"]) == {"index.html", "notes.txt"}
    assert two["files"]["index.html"] == PAGE.replace("Hi", "Hello")
    assert two["changes"] == {
        "added": ["notes.txt"],
        "modified": ["index.html"],
        "deleted": ["style.css"],
    }
    assert "top secret" not in str(two["files"]) and "root:" not in str(two["files"])
    reasons = {item["path"]: item["reason"] for item in two["metadata"]["skipped"]}
    assert reasons["passwd"] == "symlink" and reasons["secret"] == "symlink"
    assert reasons["blob.bin"] == "binary" and "larger than" in reasons["big.txt"]
    assert "node_modules/" in reasons and "dist/" in reasons
    assert two["parentId"] == one["id"]


def test_a_follow_up_that_changes_nothing_makes_no_version(api: Api, llm: Any) -> None:
    project = api.project()
    first_version(api, llm, project["id"])
    _, fragment = run(
        api,
        llm,
        project["id"],
        calls(ToolCall("list_files", {}), ToolCall("run_command", {"command": "cat index.html"})),
        finish(),
    )
    assert fragment is None


def test_edit_file_changes_one_exact_occurrence_and_explains_what_it_cannot_do(
    api: Api, llm: Any
) -> None:
    project = api.project()
    first_version(api, llm, project["id"])
    final, two = run(
        api,
        llm,
        project["id"],
        calls(
            ToolCall("edit_file", {"path": "style.css", "old": "black", "new": "blue"}),
            ToolCall("edit_file", {"path": "style.css", "old": "purple", "new": "x"}),
            ToolCall("edit_file", {"path": "style.css", "old": ";", "new": "!"}),
            ToolCall("edit_file", {"path": "missing.css", "old": "a", "new": "b"}),
            ToolCall("edit_file", {"path": "../x", "old": "a", "new": "b"}),
            ToolCall("edit_file", {"path": "style.css", "old": "", "new": "b"}),
        ),
        finish(),
        prompt="Make the header blue",
    )
    results = [call["result"] for call in final["toolCalls"]]
    assert results[0]["success"] is True
    assert "does not appear" in results[1]["error"]
    assert "appears 2 times" in results[2]["error"]
    assert "not found" in results[3]["error"]
    assert "error" in results[4] and "error" in results[5]
    assert two["files"]["style.css"] == STYLE.replace("black", "blue")
    assert two["changes"] == {"added": [], "modified": ["style.css"], "deleted": []}


def test_the_offline_demo_changes_the_app_it_built_on_a_follow_up(
    settings: Any, worker: Any
) -> None:

    from orchestrator.tokens import user_token
    from tests.conftest import SECRET, running_stack

    with running_stack(settings.model_copy(update=dict(providers=()))) as (client, execute):
        headers = {"Authorization": f"Bearer {user_token(SECRET, 'demo-follow-up')}"}
        project = client.post("/api/projects", json={"name": "d"}, headers=headers).get_json()

        def turn(prompt: str) -> tuple[Any, Any]:
            sent = client.post(
                "/api/messages",
                json={"message": prompt, "projectId": project["id"]},
                headers=headers,
            ).get_json()
            execute(sent["messageId"], sent["runId"])
            message = client.get(f"/api/messages/{sent['messageId']}", headers=headers).get_json()
            fragment = client.get(f"/api/messages/{sent['messageId']}/fragment", headers=headers)
            return message, fragment.get_json()

        _, one = turn("Build a to-do list app")
        message, two = turn("Now add a dark mode toggle")
        _, three = turn("Make the buttons green")
    assert message["status"] == "COMPLETE", message
    assert [c["name"] for c in message["toolCalls"]] == ["read_file"] * 3 + ["edit_file"] * 3 + [
        "finish"
    ]
    assert all(c["result"].get("success") for c in message["toolCalls"][3:6]), message["toolCalls"]
    assert two["title"] == one["title"] == "To-Do List App"
    assert two["changes"] == {
        "added": [],
        "modified": ["app.js", "index.html", "styles.css"],
        "deleted": [],
    }
    assert "dark mode toggle" in message["content"] and "theme-toggle" in two["files"]["index.html"]
    assert one["files"]["index.html"] in two["files"]["index.html"].replace(
        '\n    <button id="theme-toggle" type="button" class="theme-toggle">🌙 Dark mode</button>',
        "",
    )
    assert (
        three["changes"]["modified"] == ["styles.css"] and "#16a34a" in three["files"]["styles.css"]
    )
    assert three["files"]["app.js"] == two["files"]["app.js"]
    assert (three["version"], three["parentId"]) == (3, two["id"])
