"""GET /api/messages in pages (limit, before, after), listed fragments with their files or only
their paths (`fragmentFiles`), and the preview reading the one file it serves (issue 8, item 14;
issue 17, item 3)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from models import Message, Role, Status, transaction
from orchestrator.runs import lifecycle
from orchestrator.runs.lifecycle import FragmentValues
from orchestrator.settings import Settings
from tests.conftest import Api

LINK = re.compile(r'<([^>]+)>; rel="(prev|next)"')


def conversation_of(api: Api, db: Any, count: int) -> tuple[dict[str, Any], list[str]]:
    """A conversation with `count` finished messages; some share a timestamp (seq orders them)."""
    project = api.project()
    conversation = api.post("/api/conversations", json={"projectId": project["id"]}).json()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    with transaction(db) as session:
        for n in range(count):
            message = Message(
                id=str(uuid.uuid4()),
                conversation_id=conversation["id"],
                project_id=project["id"],
                user_id=api.user_id,
                role=Role.USER if n % 2 == 0 else Role.ASSISTANT,
                seq=n % 2,
                content=f"message {n}",
                status=Status.COMPLETE,
                created_at=start + timedelta(seconds=n // 2),  # a turn's two share a time
                updated_at=start,
            )
            session.add(message)
            ids.append(message.id)
    return conversation, ids


def links(answer: httpx.Response) -> dict[str, str]:
    return {rel: url for url, rel in LINK.findall(answer.headers.get("Link", ""))}


def test_a_small_conversation_is_one_array_without_page_headers(api: Api, db: Any) -> None:
    conversation, ids = conversation_of(api, db, 7)
    answer = api.get("/api/messages", params={"conversationId": conversation["id"]})
    assert answer.status_code == 200
    assert [m["id"] for m in answer.json()] == ids
    assert "Link" not in answer.headers and "X-Prev-Cursor" not in answer.headers


def test_pages_walk_back_from_the_newest_and_forward_again(api: Api, db: Any) -> None:
    conversation, ids = conversation_of(api, db, 7)
    scope = {"conversationId": conversation["id"]}
    first = api.get("/api/messages", params={**scope, "limit": 3})
    assert [m["id"] for m in first.json()] == ids[4:]  # the newest page, oldest first
    assert first.headers["X-Prev-Cursor"] == ids[4] and "X-Next-Cursor" not in first.headers
    assert set(links(first)) == {"prev"}

    seen, answer = [], first
    while "prev" in links(answer):  # older pages, by the Link header, as a client follows it
        seen = [m["id"] for m in answer.json()] + seen
        answer = api.get(links(answer)["prev"])
        assert answer.status_code == 200
    seen = [m["id"] for m in answer.json()] + seen
    assert seen == ids
    assert answer.headers["X-Next-Cursor"] == ids[0]

    forward, answer = [], api.get("/api/messages", params={**scope, "after": ids[0], "limit": 2})
    while True:
        forward += [m["id"] for m in answer.json()]
        if "next" not in links(answer):
            break
        answer = api.get(links(answer)["next"])
    assert forward == ids[1:]
    assert api.get("/api/messages", params={**scope, "after": ids[-1]}).json() == []
    before = api.get("/api/messages", params={**scope, "before": ids[3], "limit": 200})
    assert [m["id"] for m in before.json()] == ids[:3]


def test_a_project_listing_pages_the_same_way(api: Api, db: Any) -> None:
    conversation, ids = conversation_of(api, db, 5)
    scope = {"projectId": conversation["projectId"]}
    page = api.get("/api/messages", params={**scope, "limit": 2, "before": ids[4]})
    assert [m["id"] for m in page.json()] == ids[2:4]
    assert set(links(page)) == {"prev", "next"}
    assert "projectId=" in links(page)["prev"] and "limit=2" in links(page)["prev"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": "²"},
        {"before": "no-such-message"},
        {"after": "no-such-message"},
        {"before": "x", "after": "y"},
    ],
)
def test_bad_page_parameters_are_400(api: Api, db: Any, params: dict[str, str]) -> None:
    conversation, _ = conversation_of(api, db, 2)
    answer = api.get("/api/messages", params={"conversationId": conversation["id"], **params})
    assert answer.status_code == 400 and answer.json()["error"]


def test_a_cursor_from_another_conversation_or_user_is_400(
    api: Api, db: Any, make_api: Any
) -> None:
    conversation, _ = conversation_of(api, db, 2)
    other, other_ids = conversation_of(api, db, 2)
    stranger_conversation, stranger_ids = conversation_of(make_api(), db, 2)
    for cursor in (other_ids[0], stranger_ids[0]):
        answer = api.get(
            "/api/messages", params={"conversationId": conversation["id"], "before": cursor}
        )
        assert answer.status_code == 400


def with_fragment(api: Api, db: Any, files: dict[str, str]) -> tuple[str, dict[str, Any]]:
    conversation, ids = conversation_of(api, db, 2)
    with transaction(db) as session:
        lifecycle.upsert_fragment(
            session,
            ids[1],
            FragmentValues(
                title="T",
                files=files,
                framework="NEXTJS",
                sandbox_id=None,
                sandbox_url=None,
                metadata={"summary": "S"},
            ),
        )
    return ids[1], conversation


def test_listed_fragments_name_their_files_and_the_fragment_endpoint_serves_them(
    api: Api, db: Any
) -> None:
    files = {"index.html": "<h1>hi</h1>", "app/main.js": "console.log(1)"}
    message_id, conversation = with_fragment(api, db, files)
    listed = api.get(
        "/api/messages", params={"conversationId": conversation["id"], "fragmentFiles": "paths"}
    ).json()
    fragment = listed[1]["codeFragment"]
    assert "files" not in fragment
    assert fragment["filePaths"] == ["app/main.js", "index.html"]
    assert fragment["title"] == "T" and fragment["metadata"] == {"summary": "S"}
    assert listed[0]["codeFragment"] is None
    full = api.get(f"/api/messages/{message_id}/fragment").json()
    assert full["files"] == files
    assert {k: v for k, v in full.items() if k != "files"} == {
        k: v for k, v in fragment.items() if k != "filePaths"
    }


def test_the_preview_serves_each_file_and_only_the_fragments_files(api: Api, db: Any) -> None:
    files = {
        "index.html": "<h1>root</h1>",
        "docs/index.html": "<h1>docs</h1>",
        "a.b/c'd.js": "let q = 1",
        'odd"name.txt': "quoted",
        "ünï.css": "body{}",
    }
    message_id, _ = with_fragment(api, db, files)
    fragment_id = api.get(f"/api/messages/{message_id}/fragment").json()["id"]
    base = str(api.http.base_url.join(f"/preview/{fragment_id}/"))
    expected = {
        "": "<h1>root</h1>",
        "index.html": "<h1>root</h1>",
        "docs": "<h1>docs</h1>",
        "docs/": "<h1>docs</h1>",
        "a.b/c'd.js": "let q = 1",
        "odd%22name.txt": "quoted",
        "%C3%BCn%C3%AF.css": "body{}",
        "./docs/../index.html": "<h1>root</h1>",
    }
    for path, body in expected.items():
        answer = httpx.get(base + path)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.text == body, path
    assert httpx.get(base + "app.js").status_code == 404
    assert httpx.get(base + "$.index").status_code == 404
    missing = str(api.http.base_url.join(f"/preview/{uuid.uuid4()}/index.html"))
    assert httpx.get(missing).status_code == 404


def test_an_asset_request_reads_that_file_not_the_whole_fragment(
    api: Api, db: Any, settings: Settings, celery_app: Any
) -> None:
    from web import create_app

    files = {f"assets/{n}.js": "x" * 1000 for n in range(50)} | {"index.html": "<h1>hi</h1>"}
    message_id, _ = with_fragment(api, db, files)
    fragment_id = api.get(f"/api/messages/{message_id}/fragment").json()["id"]
    app = create_app(settings, celery=celery_app)
    statements: list[str] = []
    engine = app.extensions["appforge"].engine
    listen = lambda _c, _cur, statement, *_: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listen)
    try:
        answer = app.test_client().get(f"/preview/{fragment_id}/assets/7.js")
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "x" * 1000
    reads = [s for s in statements if "fragments" in s and "SELECT" in s.upper()]
    assert reads, statements
    # The JSON column is only ever read through a path into it, never loaded as a whole.
    whole = re.compile(r"(?<!JSON_EXTRACT\()fragments\.files(?!\s*->>)", re.IGNORECASE)
    assert not [s for s in reads if whole.search(s)], reads


def test_listed_fragments_carry_their_files_by_default_as_the_seed_documents_do(
    api: Api, db: Any
) -> None:
    files = {"index.html": "<h1>hi</h1>", "app/main.js": "console.log(1)"}
    message_id, conversation = with_fragment(api, db, files)
    for params in ({}, {"fragmentFiles": "files"}):
        listed = api.get(
            "/api/messages", params={"conversationId": conversation["id"], **params}
        ).json()
        fragment = listed[1]["codeFragment"]
        assert "filePaths" not in fragment
        assert fragment["files"] == files
        # The very shape (and key order) GET /api/messages/<id>/fragment answers.
        full = api.get(f"/api/messages/{message_id}/fragment").json()
        assert list(fragment.items()) == list(full.items())
    assert listed[0]["codeFragment"] is None


@pytest.mark.parametrize("value", ["", "path", "PATHS", "none", "paths,files"])
def test_any_other_fragment_files_value_is_400_with_a_sentence(
    api: Api, db: Any, value: str
) -> None:
    _, conversation = with_fragment(api, db, {"index.html": "<h1>hi</h1>"})
    answer = api.get(
        "/api/messages", params={"conversationId": conversation["id"], "fragmentFiles": value}
    )
    assert answer.status_code == 400
    assert set(answer.json()) == {"error"}
    assert "fragmentFiles" in answer.json()["error"], answer.json()


def test_page_links_keep_the_fragment_form(api: Api, db: Any) -> None:
    conversation, ids = conversation_of(api, db, 5)
    with transaction(db) as session:
        lifecycle.upsert_fragment(
            session,
            ids[1],
            FragmentValues(
                title="T",
                files={"b.js": "b", "a.js": "a"},
                framework="NEXTJS",
                sandbox_id=None,
                sandbox_url=None,
                metadata={},
            ),
        )
    scope = {"conversationId": conversation["id"], "fragmentFiles": "paths", "limit": 2}
    answer = api.get("/api/messages", params=scope)
    listed = list(answer.json())
    while "prev" in links(answer):  # the page that holds ids[1] is reached by a link
        assert "fragmentFiles=paths" in links(answer)["prev"]
        answer = api.get(links(answer)["prev"])
        listed = answer.json() + listed
    assert [m["id"] for m in listed] == ids
    assert listed[1]["codeFragment"]["filePaths"] == ["a.js", "b.js"]
    assert "files" not in listed[1]["codeFragment"]
