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
