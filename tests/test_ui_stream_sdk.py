"""The UI message stream read by the real AI SDK (DESIGN section 19): `/ui-stream`, `POST /api/chat`
through `DefaultChatTransport`, resume by `Last-Event-ID` and by `GET /api/chat/<id>/stream`."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import ai_sdk
from tests.conftest import Api, unavailable, wait_for
from tests.fakes.llm_server import Error, Hang, Reply, ToolCall

PAGE = {"path": "index.html", "content": "<h1>hi</h1>"}


@pytest.fixture(scope="module")
def sdk() -> Path:
    return ai_sdk.sdk_dir()


def script_build(llm: Any, text: str = "Writing the page. ", **reply: Any) -> None:
    llm.script(
        Reply(text, tool_calls=[ToolCall("write_file", PAGE)], **reply),
        Reply("Done.", tool_calls=[ToolCall("finish", {"title": "T", "summary": "S"})]),
    )


def start_run(api: Api) -> str:
    response = api.send(api.project()["id"])
    assert response.status_code == 201, response.text
    return str(response.json()["messageId"])


def text_of(message: dict[str, Any]) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def assert_assembled_build(read: dict[str, Any], content: str) -> None:
    """What the SDK made of a build run: text, the tools with inputs and outputs, the fragment."""
    assert read["errors"] == [], read["errors"]
    assert read["status"] == 200
    assert read["headers"]["x-vercel-ai-ui-message-stream"] == "v1"
    assert read["headers"]["content-type"].startswith("text/event-stream")
    assert read["frames"][-1] == {"id": None, "data": "[DONE]"}
    assert all(f["id"] for f in read["frames"][:-1]), read["frames"]
    message = read["message"]
    assert message["role"] == "assistant"
    assert text_of(message) == content == "Writing the page. Done."
    tools = [p for p in message["parts"] if p["type"].startswith("tool-")]
    assert [t["type"] for t in tools] == ["tool-write_file", "tool-finish"]
    assert all(t["state"] == "output-available" for t in tools), tools
    assert tools[0]["input"] == PAGE and tools[0]["output"] is not None
    (fragment,) = [p for p in message["parts"] if p["type"] == "data-fragment"]
    assert fragment["data"]["files"] == {"index.html": "<h1>hi</h1>"}
    (status,) = [p for p in message["parts"] if p["type"] == "data-status"]
    assert status["data"] == {"status": "COMPLETE"}
    assert [p["type"] for p in message["parts"]].count("step-start") == 2
    assert read["chunks"][0]["type"] == "start" and read["chunks"][-1]["type"] == "finish"


def test_the_sdk_assembles_a_live_run_from_its_ui_stream(api: Api, llm: Any, sdk: Path) -> None:
    script_build(llm, chunk_size=4, delay=0.01)
    message_id = start_run(api)
    url = f"{api.base_url}/api/messages/{message_id}/ui-stream"
    read = ai_sdk.read(sdk, "stream", url, token=api.token)
    assert_assembled_build(read, api.message(message_id)["content"])
    assert read["message"]["id"] == message_id


def test_a_finished_run_reads_the_same_from_its_log(api: Api, llm: Any, sdk: Path) -> None:
    script_build(llm)
    message_id = start_run(api)
    content = api.wait_terminal(message_id)["content"]
    url = f"{api.base_url}/api/messages/{message_id}/ui-stream"
    first = ai_sdk.read(sdk, "stream", url, token=api.token)
    assert_assembled_build(first, content)
    assert ai_sdk.read(sdk, "stream", url, token=api.token)["frames"] == first["frames"]


def test_default_chat_transport_sends_a_prompt_and_reads_its_run(
    api: Api, llm: Any, sdk: Path
) -> None:
    script_build(llm)
    project_id = api.project()["id"]
    earlier = [
        {"id": "u0", "role": "user", "parts": [{"type": "text", "text": "An earlier prompt"}]},
        {"id": "a0", "role": "assistant", "parts": [{"type": "text", "text": "An answer"}]},
    ]
    new = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Build a page"}]}
    body = {"id": project_id, "messages": [*earlier, new]}  # the client sends only the last
    read = ai_sdk.chat(sdk, f"{api.base_url}/api/chat", body, token=api.token)
    message_id = read["message"]["id"]
    assert_assembled_build(read, api.message(message_id)["content"])
    listed = api.get("/api/messages", params={"projectId": project_id}).json()
    assert [(m["role"], m["content"]) for m in listed][0] == ("USER", "Build a page")
    # Nothing runs now: the transport's resume gets 204 and no stream.
    resumed = ai_sdk.read(sdk, "resume", f"{api.base_url}/api/chat", project_id, token=api.token)
    assert (resumed["status"], resumed["message"], resumed["errors"]) == (204, None, [])


def test_resume_by_chat_id_replays_the_running_run(api: Api, llm: Any, sdk: Path) -> None:
    script_build(llm, chunk_size=2, delay=0.05)
    project_id = api.project()["id"]
    response = api.send(project_id)
    assert response.status_code == 201, response.text
    message_id = response.json()["messageId"]
    read = ai_sdk.read(sdk, "resume", f"{api.base_url}/api/chat", project_id, token=api.token)
    assert read["status"] == 200
    assert_assembled_build(read, api.message(message_id)["content"])


def raw_frames(api: Api, message_id: str, stop_after: int) -> list[tuple[str, str]]:
    """The first `stop_after` frames (id, data) of a stream, then hang up."""
    frames: list[tuple[str, str]] = []
    fields: dict[str, str] = {}
    path = f"/api/messages/{message_id}/ui-stream"
    with api.http.stream("GET", path, timeout=httpx.Timeout(15, read=10)) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:
                frames.append((fields.get("id", ""), fields["data"]))
                fields = {}
                if len(frames) >= stop_after:
                    break
    return frames


def feed(sdk: Path, frames: list[tuple[str, str]], api: Api) -> Any:
    """Raw frames, as one stream, through the SDK's parser and assembly."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as file:
        file.write("".join(f"id: {i}\ndata: {d}\n\n" if i else f"data: {d}\n\n" for i, d in frames))
    return ai_sdk.read(sdk, "file", file.name, token=api.token)


def test_a_cut_mid_run_resumed_by_last_event_id_misses_and_repeats_nothing(
    api: Api, llm: Any, sdk: Path
) -> None:
    script_build(llm, "one two three four five six seven. ", chunk_size=3, delay=0.05)
    message_id = start_run(api)
    first = raw_frames(api, message_id, stop_after=8)  # inside the text, before the tools
    assert any(json.loads(d)["type"] == "text-delta" for _i, d in first)
    url = f"{api.base_url}/api/messages/{message_id}/ui-stream"
    rest = ai_sdk.read(sdk, "stream", url, token=api.token, last_event_id=first[-1][0])
    assert rest["status"] == 200
    resumed = first + [(f["id"] or "", f["data"]) for f in rest["frames"]]
    chunks = [json.loads(d) for _i, d in resumed if d != "[DONE]"]
    assert [c["type"] for c in chunks].count("start") == 1
    assert [c["type"] for c in chunks].count("text-start") == 2  # one text part per step
    whole = feed(sdk, resumed, api)
    assert whole["errors"] == [], whole["errors"]
    content = api.message(message_id)["content"]
    assert text_of(whole["message"]) == content == "one two three four five six seven. Done."
    # The whole stream, read at once, is the same chunks.
    again = ai_sdk.read(sdk, "stream", url, token=api.token)
    assert [json.loads(f["data"]) for f in again["frames"][:-1]] == chunks


def test_a_cancelled_run_ends_its_stream_with_abort(api: Api, llm: Any, sdk: Path) -> None:
    llm.script(Hang(seconds=30, after_chunks=1))
    message_id = start_run(api)
    wait_for(lambda: api.message(message_id)["status"] == "STREAMING", 10, "the run to start")
    assert api.delete(f"/api/messages/{message_id}").status_code == 200
    url = f"{api.base_url}/api/messages/{message_id}/ui-stream"
    read = ai_sdk.read(sdk, "stream", url, token=api.token)
    assert read["errors"] == []
    assert [c["type"] for c in read["chunks"]][-3:] == ["finish-step", "data-status", "abort"]
    assert read["frames"][-1]["data"] == "[DONE]"
    (status,) = [p for p in read["message"]["parts"] if p["type"] == "data-status"]
    assert status["data"] == {"status": "CANCELLED"}


def test_a_failed_run_ends_its_stream_with_error_then_finish(
    api: Api, llm: Any, fallback_llm: Any, sdk: Path
) -> None:
    llm.script(Error(400, "the model refuses"))
    fallback_llm.script(Error(400, "the model refuses"))
    message_id = start_run(api)
    final = api.wait_terminal(message_id)
    assert final["status"] == "FAILED"
    url = f"{api.base_url}/api/messages/{message_id}/ui-stream"
    read = ai_sdk.read(sdk, "stream", url, token=api.token)
    types = [c["type"] for c in read["chunks"]]
    assert types[-1] == "finish" and read["chunks"][-1]["finishReason"] == "error"
    (error,) = [c for c in read["chunks"] if c["type"] == "error"]
    assert error["errorText"] == final["error"]
    # The SDK hands an `error` chunk to onError, and reports nothing else.
    assert read["errors"] == [f"onError: {final['error']}"]
    assert read["frames"][-1]["data"] == "[DONE]"


@pytest.fixture(scope="module")
def checked(settings: Any) -> Iterator[Any]:

    from orchestrator.checks.browser import find_chromium
    from tests.test_checks import make_stack

    if find_chromium() is None:
        unavailable("no Chromium: install the Debian package chromium")
    yield from make_stack(
        settings.model_copy(update=dict(preview_check="chromium", check_max_rounds=2))
    )


def test_a_checked_run_with_a_repair_round_reads_in_the_sdk(
    checked: Any, llm: Any, redis_client: Any, sdk: Path, api: Api
) -> None:
    from orchestrator.streams.replay import read_after
    from orchestrator.streams.ui_messages import UiMessageTranslator
    from tests.test_checks import FIXED, THROWS, page

    llm.script(page(THROWS), page(FIXED, "Fixed"))
    message, _fragment, _headers = checked.run("Say hello")
    assert message["status"] == "COMPLETE", message
    translator = UiMessageTranslator(message["id"])
    frames = []
    after = "0-0"
    while batch := read_after(redis_client, message["id"], after):
        after = batch[-1].id or after
        for item in batch:
            frames += [(item.id or "", json.dumps(c)) for c in translator.chunks(item)]
    read = feed(sdk, [*frames, ("", "[DONE]")], api)
    assert read["errors"] == [], read["errors"]
    parts = read["message"]["parts"]
    checks = {p["id"]: p["data"] for p in parts if p["type"] == "data-check"}
    assert set(checks) == {"check-render"}, parts  # a static app has no build to check
    assert checks["check-render"]["status"] == "passed"  # the repaired version's, in place
    tools = [p for p in parts if p["type"].startswith("tool-")]
    assert [t["type"] for t in tools].count("tool-write_file") == 2
    assert all(t["state"] == "output-available" for t in tools)
