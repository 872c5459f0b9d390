from __future__ import annotations

from tests.conftest import Api


def test_prompt_streams_a_reply_to_complete(api: Api) -> None:
    project = api.project()
    sent = api.send(project["id"], "Say hello please")
    assert sent.status_code == 201, sent.text
    body = sent.json()
    final = api.wait_terminal(body["messageId"])
    assert final["status"] == "COMPLETE", final
    assert final["content"] == "Hello from the fake LLM."
