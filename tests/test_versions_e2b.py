"""Versions with SANDBOX=e2b, against the offline fake: seeding, reading back, previews revived."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.sandboxes.e2b import DEV_SERVERS
from orchestrator.settings import Settings
from orchestrator.tokens import user_token
from tests.conftest import SECRET, running_stack
from tests.fakes.e2b_server import FakeE2B
from tests.fakes.llm_server import Reply, ToolCall


def finish() -> Reply:
    return Reply("Done.", tool_calls=[ToolCall("finish", {"title": "App", "summary": "S"})])


class Stack:
    def __init__(self, client: Any, execute: Any) -> None:
        self.client, self.execute = client, execute
        self.headers = {"Authorization": f"Bearer {user_token(SECRET, f'e2b-{time.time_ns()}')}"}
        self.project = client.post(
            "/api/projects", json={"name": "p", "framework": "REACT"}, headers=self.headers
        ).get_json()

    def turn(self, prompt: str) -> tuple[dict[str, Any], Any]:
        sent = self.client.post(
            "/api/messages",
            json={"message": prompt, "projectId": self.project["id"]},
            headers=self.headers,
        ).get_json()
        self.execute(sent["messageId"], sent["runId"])
        message = self.get(f"/api/messages/{sent['messageId']}").get_json()
        return message, self.get(f"/api/messages/{sent['messageId']}/fragment").get_json()

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=self.headers)

    def post(self, path: str, body: Any = None) -> Any:
        return self.client.post(path, json=body if body is not None else {}, headers=self.headers)


def test_an_e2b_follow_up_starts_from_the_base_and_reads_the_workspace_back(
    e2b_settings: Settings, fake_e2b: FakeE2B, llm: Any, worker: Any
) -> None:
    write = [
        ToolCall("write_file", {"path": "index.html", "content": "<h1>1</h1>"}),
        ToolCall("write_file", {"path": "src/style.css", "content": "a{}"}),
    ]
    command = (
        "rm src/style.css && echo new > notes.txt && ln -s /etc/passwd passwd"
        " && mkdir -p node_modules/x && echo d > node_modules/x/i.js && cat index.html"
    )
    llm.script(
        Reply("", tool_calls=write),
        finish(),
        Reply("", tool_calls=[ToolCall("run_command", {"command": command})]),
        finish(),
    )
    with running_stack(e2b_settings) as (client, execute):
        stack = Stack(client, execute)
        _, one = stack.turn("Build a page")
        message, two = stack.turn("Change it")
    assert message["toolCalls"][0]["result"]["stdout"] == "<h1>1</h1>"  # seeded before step one
    assert two["files"] == {"index.html": "<h1>1</h1>", "notes.txt": "new\n"}
    assert two["changes"] == {"added": ["notes.txt"], "modified": [], "deleted": ["src/style.css"]}
    assert (two["version"], two["parentId"]) == (2, one["id"])
    reasons = {s["path"]: s["reason"] for s in two["metadata"]["skipped"]}
    assert reasons == {"passwd": "symlink", "node_modules/": "dependency or build folder"}
    assert two["metadata"]["sandbox"]["base"] == {"how": "written", "files": 2}
    uploads = [c for c in fake_e2b.calls_to("POST", "/files") if c.sandbox_id == two["sandboxId"]]
    assert len(uploads) == 1  # the base in one multipart request


def test_a_live_preview_reuses_a_running_sandbox_and_rebuilds_an_expired_one(
    e2b_settings: Settings, fake_e2b: FakeE2B, llm: Any, worker: Any
) -> None:
    llm.script(
        Reply("", tool_calls=[ToolCall("write_file", {"path": "index.html", "content": "<p>"})]),
        finish(),
    )
    with running_stack(e2b_settings) as (client, execute):
        stack = Stack(client, execute)
        _, one = stack.turn("Build a page")
        old_id = one["sandboxId"]
        assert fake_e2b.sandboxes[old_id].state == "alive"

        alive = stack.post(f"/api/fragments/{one['id']}/sandbox")
        assert alive.status_code == 200, alive.get_json()
        body = alive.get_json()
        assert (body["sandboxId"], body["sandboxUrl"]) == (old_id, one["sandboxUrl"])
        assert body["expiresAt"] is not None
        assert fake_e2b.calls_to("POST", f"/v2/sandboxes/{old_id}/connect")
        assert len(fake_e2b.calls_to("POST", "/v2/sandboxes")) == 1  # nothing new was created

        fake_e2b.expire(old_id)
        revived = stack.post(f"/api/fragments/{one['id']}/sandbox").get_json()
        new_id = revived["sandboxId"]
        assert new_id != old_id and new_id in fake_e2b.sandboxes
        assert revived["sandboxUrl"] == f"https://5173-{new_id}.{fake_e2b.domain}"
        sandbox = fake_e2b.sandboxes[new_id]
        assert sandbox.host_path("/home/user/app/index.html").read_text() == "<p>"
        dev_server = DEV_SERVERS["REACT"].command
        assert any(p.command == dev_server for p in sandbox.processes.values())
        assert sandbox.state == "alive"
        stored = stack.get(f"/api/messages/{one['messageId']}/fragment").get_json()
        assert (stored["sandboxId"], stored["sandboxUrl"]) == (new_id, revived["sandboxUrl"])

        # Someone else's version looks missing, and creates nothing.
        stranger = {"Authorization": f"Bearer {user_token(SECRET, 'e2b-stranger')}"}
        theirs = client.post(f"/api/fragments/{one['id']}/sandbox", json={}, headers=stranger)
        assert theirs.status_code == 404
        assert len(fake_e2b.calls_to("POST", "/v2/sandboxes")) == 2


def test_a_first_e2b_version_is_compared_with_its_template_and_a_look_makes_none(
    e2b_settings: Settings, fake_e2b: FakeE2B, llm: Any, worker: Any
) -> None:
    fake_e2b.template_files = {"package.json": "{}", "src/App.tsx": "template"}
    llm.script(
        Reply("", tool_calls=[ToolCall("run_command", {"command": "ls -R"})]),
        finish(),
        Reply(
            "",
            tool_calls=[
                ToolCall("edit_file", {"path": "src/App.tsx", "old": "template", "new": "mine"})
            ],
        ),
        finish(),
    )
    with running_stack(e2b_settings) as (client, execute):
        stack = Stack(client, execute)
        looked, nothing = stack.turn("What is in there?")
        _, one = stack.turn("Make it mine")
    assert "package.json" in looked["toolCalls"][0]["result"]["stdout"]
    assert nothing is None  # the template alone is no version
    assert one["files"] == {"package.json": "{}", "src/App.tsx": "mine"}
    assert (one["version"], one["parentId"]) == (1, None)
    assert one["changes"] == {"added": [], "modified": ["src/App.tsx"], "deleted": []}
