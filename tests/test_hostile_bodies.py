"""Hostile request bodies: each is a 400 with a sentence, or is stored verbatim; never a 500.

The same answers on SQLite and PostgreSQL: text PostgreSQL cannot store (NUL, lone surrogates)
is refused on both, and numbers are bounded by what a PostgreSQL column holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from models import transaction
from orchestrator import accounts
from tests.conftest import Api
from web import schemas

DEPTH_LIMIT = 64  # web.api.common.MAX_DEPTH


@pytest.fixture
def rich(api: Api, db: Any) -> Api:
    """A user with credits to spare, so accepted prompts never run into a 402."""
    with transaction(db) as session:
        accounts.set_credits(session, api.user_id, 1000, 5)
    return api


@pytest.fixture
def turn(rich: Api) -> Iterator[dict[str, Any]]:
    """A finished turn of `rich`: the user message takes the attachments."""
    sent = rich.send(rich.project()["id"]).json()
    rich.wait_terminal(sent["messageId"])
    yield sent


def assert_400(answer: Any, where: Any = "") -> None:
    assert answer.status_code == 400, (where, answer.status_code, answer.text)
    body = answer.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], where


def post_raw(api: Api, path: str, raw: bytes | str) -> Any:
    content = raw.encode() if isinstance(raw, str) else raw
    return api.post(path, content=content, headers={"Content-Type": "application/json"})


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth - 1):
        value = [value] if level % 2 else {"k": value}
    return value


# --- Structure ---


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_json_nested_thousands_of_levels_deep_is_400(api: Api, depth: int) -> None:
    for raw in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        assert_400(post_raw(api, "/api/messages", raw), depth)
        assert_400(post_raw(api, "/api/projects", raw), depth)


def test_nesting_past_the_limit_inside_a_field_is_400_and_within_it_is_stored(
    rich: Api, turn: dict[str, Any]
) -> None:
    path = f"/api/messages/{turn['id']}/attachments"
    attachment = {"url": "https://example.com/a.png", "size": 1}
    # The body and the attachment object are two levels of their own.
    deep = nested(DEPTH_LIMIT + 1 - 2)
    too_deep = nested(DEPTH_LIMIT + 2 - 2)
    assert_400(rich.post(path, json={**attachment, "sourceMetadata": too_deep}))
    assert_400(rich.post(path, json={**attachment, "sourceMetadata": nested(900)}))
    stored = rich.post(path, json={**attachment, "sourceMetadata": deep})
    assert stored.status_code == 201, stored.text
    assert stored.json()["sourceMetadata"] == deep
    listed = rich.get(f"/api/messages/{turn['id']}/attachments").json()
    assert listed[-1]["sourceMetadata"] == deep


@pytest.mark.parametrize(
    "raw",
    ["", "{", "nul", '{"message": "x",}', "[1, 2", "\ufeff", '{"a": 1} {"b": 2}', "NaN"],
)
def test_text_that_is_not_json_is_400(api: Api, raw: str) -> None:
    assert_400(post_raw(api, "/api/messages", raw), raw)


def test_bytes_that_are_not_utf8_are_400(api: Api) -> None:
    assert_400(post_raw(api, "/api/messages", b'{"message": "\xff\xfe broken", "projectId": "x"}'))


def test_a_body_that_is_json_but_not_an_object_is_400(api: Api) -> None:
    for body in ([], [1], "text", 1, 1.5, True, None):
        assert_400(
            api.post(
                "/api/projects",
                content=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            ),
            body,
        )


def test_a_body_sent_as_another_content_type_is_400(api: Api) -> None:
    answer = api.post(
        "/api/projects", content=b'{"name": "x"}', headers={"Content-Type": "text/plain"}
    )
    assert_400(answer)
    assert api.post("/api/projects", data={"name": "x"}).status_code == 400


# --- Types ---

WRONG_VALUES: dict[str, list[Any]] = {
    "string": [123, 1.5, True, [], ["text"], {}, {"a": "b"}],
    "integer": ["12", True, 1.5, [], [1], {}, "1e3"],
    "array": ["text", 1, True, {}, {"0": {}}],
}


def field_types(model: type[BaseModel]) -> dict[str, tuple[str, bool]]:
    """Each field's JSON type and whether null is allowed, read from the model itself."""
    found = {}
    for name, spec in model.model_json_schema()["properties"].items():
        kinds = [spec["type"]] if "type" in spec else [s.get("type") for s in spec.get("anyOf", [])]
        kinds = [k for k in kinds if k]
        if kinds:  # a field of any JSON (sourceMetadata) has no wrong type
            found[name] = (next(k for k in kinds if k != "null"), "null" in kinds)
    return found


def wrong_bodies(model: type[BaseModel], valid: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for name, (kind, nullable) in field_types(model).items():
        for value in WRONG_VALUES[kind] + ([] if nullable else [None]):
            yield {**valid, name: value}


@pytest.fixture
def turn_of_api(api: Api) -> dict[str, Any]:
    """A finished turn of `api`, a user with the default credits."""
    sent = api.send(api.project()["id"]).json()
    api.wait_terminal(sent["messageId"])
    return dict(sent)


def test_a_wrong_type_in_any_field_of_any_body_is_400_and_stores_nothing(
    api: Api, turn_of_api: dict[str, Any]
) -> None:
    project = turn_of_api["projectId"]
    attachment = {"url": "https://example.com/a.png", "size": 1}
    cases = [
        ("POST", "/api/projects", schemas.CreateProject, {"name": "Shop"}),
        ("POST", "/api/conversations", schemas.CreateConversation, {"projectId": project}),
        ("POST", "/api/messages", schemas.SendMessage, {"message": "Build", "projectId": project}),
        (
            "POST",
            f"/api/messages/{turn_of_api['id']}/attachments",
            schemas.AttachmentBody,
            attachment,
        ),
        ("DELETE", "/api/messages", schemas.CancelMessage, {"messageId": turn_of_api["id"]}),
    ]
    tried = 0
    for method, path, model, valid in cases:
        for body in wrong_bodies(model, valid):
            assert_400(api.request(method, path, json=body), (method, path, body))
            tried += 1
    for body in wrong_bodies(schemas.AttachmentBody, attachment):
        sent = {"message": "Build it", "projectId": project, "attachments": [body]}
        assert_400(api.post("/api/messages", json=sent), body)
        tried += 1
    assert tried > 100
    listed = api.get("/api/messages", params={"projectId": project}).json()
    assert len(listed) == 2 and len(listed[0]["attachments"]) == 0
    assert [p["name"] for p in api.get("/api/projects").json()] == ["Demo"]
    assert api.get("/api/me").json()["credits"] == 4


def test_unknown_fields_are_400(api: Api) -> None:
    assert_400(api.post("/api/projects", json={"name": "x", "admin": True}))
    assert_400(api.post("/api/projects", json={"name": "x", "userId": "someone_else"}))


# --- Text ---

UNICODE = [
    "Build 🚀 an app 👩🏽‍💻 for 🏳️‍🌈 families 👨‍👩‍👧‍👦",
    "ابنِ لي تطبيقًا للمهام",  # Arabic, right to left
    "בנה לי אפליקציה \u202e!olleh\u202c",  # Hebrew, and a right-to-left override
    "Zalgo t̸̢̛̮̹͖͔̟̩̜̾̈́͋̀͒͘ͅe̵͙̓x̴̩̓t̶̢̛",
    "zero\u200bwidth\u200djoiner\ufeffbom\u2028line\u2029para",
    "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠜎𠜱 and a noncharacter \uffff",
    "tab\tnew\nline\rcarriage \x01\x1f control",
    "quotes \" ' ` and backslashes \\ \\\\ and {braces} <tags>&amp;",
]


@pytest.mark.parametrize("text", UNICODE, ids=range(len(UNICODE)))
def test_unicode_is_stored_and_returned_verbatim(rich: Api, text: str) -> None:
    project = rich.project(text[:200])
    assert project["name"] == text[:200]
    title = text[:200]
    conversation = rich.post(
        "/api/conversations", json={"projectId": project["id"], "title": title}
    ).json()
    assert conversation["title"] == title
    sent = rich.post("/api/messages", json={"message": text, "conversationId": conversation["id"]})
    assert sent.status_code == 201, sent.text
    assert sent.json()["content"] == text.strip()
    assert rich.message(sent.json()["id"])["content"] == text.strip()
    rich.wait_terminal(sent.json()["messageId"])


SQLISH = [
    "'; DROP TABLE messages; --",
    "Robert'); DROP TABLE users;--",
    "' OR '1'='1",
    '" OR ""="',
    "%_%' ESCAPE '\\",
    "$$; SELECT pg_sleep(10); $$",
    "1; UPDATE users SET credits = 1000000 --",
    "\\x27 \\' \\\\'",
]


def test_sql_looking_text_is_stored_verbatim(rich: Api, turn: dict[str, Any]) -> None:
    credits = rich.get("/api/me").json()["credits"]
    for text in SQLISH:
        assert rich.project(text)["name"] == text
        added = rich.post(
            f"/api/messages/{turn['id']}/attachments",
            json={
                "url": "https://example.com/a.png",
                "size": 1,
                "importId": text,
                "sourceMetadata": {text: text},
            },
        )
        assert added.status_code == 201, added.text
        assert (added.json()["importId"], added.json()["sourceMetadata"]) == (text, {text: text})
    sent = rich.send(turn["projectId"], SQLISH[0])
    assert sent.status_code == 201 and sent.json()["content"] == SQLISH[0]
    rich.wait_terminal(sent.json()["messageId"])
    names = {p["name"] for p in rich.get("/api/projects").json()}
    assert set(SQLISH) <= names
    assert rich.get("/api/me").json()["credits"] == credits - 1


def test_sql_looking_ids_are_404_not_500(api: Api) -> None:
    for text in SQLISH:
        assert api.get("/api/projects/" + text.replace("/", "%2F")).status_code == 404, text
        assert api.get("/api/conversations", params={"projectId": text}).status_code == 404
        sent = api.post("/api/messages", json={"message": "Build it", "projectId": text[:64]})
        assert sent.status_code == 404, text


def test_nul_characters_are_400_everywhere_on_both_databases(
    rich: Api, turn: dict[str, Any]
) -> None:
    """PostgreSQL text cannot hold NUL; refusing it keeps SQLite and PostgreSQL alike."""
    project, message = turn["projectId"], turn["id"]
    attachment = {"url": "https://example.com/a.png", "size": 1}
    bodies = [
        ("POST", "/api/projects", {"name": "bad\u0000name"}),
        ("POST", "/api/conversations", {"projectId": project, "title": "t\u0000"}),
        ("POST", "/api/conversations", {"projectId": project + "\u0000"}),
        ("POST", "/api/messages", {"message": "Build\u0000 it", "projectId": project}),
        ("POST", "/api/messages", {"value": "Build\u0000 it", "projectId": project}),
        ("POST", "/api/messages", {"message": "Build it", "projectId": "\u0000"}),
        ("POST", f"/api/messages/{message}/attachments", {**attachment, "importId": "a\u0000"}),
        (
            "POST",
            f"/api/messages/{message}/attachments",
            {**attachment, "sourceMetadata": {"deep": ["x\u0000"]}},
        ),
        (
            "POST",
            f"/api/messages/{message}/attachments",
            {**attachment, "sourceMetadata": {"k\u0000": 1}},
        ),
        ("DELETE", "/api/messages", {"messageId": "\u0000"}),
    ]
    for method, path, body in bodies:
        assert_400(rich.request(method, path, json=body), body)
    for path in ("/api/messages/%00", "/api/projects/a%00b", "/api/fragments/%00/full"):
        assert_400(rich.get(path), path)
    assert_400(rich.get("/api/fragments/%00"))  # public routes too
    assert_400(rich.get("/api/conversations", params={"projectId": "\u0000"}))
    assert_400(rich.get("/api/messages", params={"conversationId": "x\u0000"}))
    assert rich.get(f"/api/messages/{message}/attachments").json() == []


@pytest.mark.parametrize(
    "escaped", ["\\ud800", "\\udfff", "a\\udc00b", "\\ud83d", "\\ude00\\ud83d"]
)
def test_lone_surrogates_are_400(rich: Api, escaped: str) -> None:
    project = rich.project()["id"]
    # Written as JSON text by hand: json.dumps would escape the backslash of the escape.
    raw = '{"message": "Build ' + escaped + ' it", "projectId": "' + project + '"}'
    assert_400(post_raw(rich, "/api/messages", raw), escaped)
    assert_400(post_raw(rich, "/api/projects", '{"name": "' + escaped + '"}'), escaped)
    assert rich.get("/api/messages", params={"projectId": project}).json() == []


def test_a_surrogate_pair_is_one_character_and_is_stored(rich: Api) -> None:
    project = rich.project()["id"]
    raw = '{"message": "Build \\ud83d\\ude00 it", "projectId": "' + project + '"}'
    sent = post_raw(rich, "/api/messages", raw)
    assert sent.status_code == 201, sent.text
    assert sent.json()["content"] == "Build 😀 it"
    rich.wait_terminal(sent.json()["messageId"])


# --- Lengths and numbers ---


def test_the_1000_character_limit_counts_characters_not_bytes(rich: Api) -> None:
    for text, status in [
        ("🚀" * 1000, 201),  # 4000 bytes in UTF-8, 2000 UTF-16 units
        ("🚀" * 1001, 400),
        ("é" * 1000, 201),
        ("e\u0301" * 500, 201),  # 500 letters with a combining accent are 1000 characters
        ("e\u0301" * 501, 400),
        ("   " + "a" * 1000 + "\n\t ", 201),  # counted after trimming
        ("\u3000" + "ab" + "\u3000", 400),  # ideographic spaces are trimmed too
    ]:
        project = rich.project()["id"]
        answer = rich.send(project, text)
        assert answer.status_code == status, (len(text), answer.text)
        if status == 201:
            assert answer.json()["content"] == text.strip()
            rich.wait_terminal(answer.json()["messageId"])
    assert rich.project("🚀" * 200)["name"] == "🚀" * 200
    assert_400(rich.post("/api/projects", json={"name": "🚀" * 201}))


BAD_URLS = [
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "data:image/png;base64,iVBORw0KGgo=",
    "file:///etc/passwd",
    "ftp://example.com/a.png",
    "vbscript:msgbox(1)",
    "//example.com/a.png",
    "example.com/a.png",
    "https://",
    "http:/example.com",
    "https:\\\\example.com",
    " https://example.com/a.png",
    "https://example.com/a b.png",
    "https://example.com/a.png\n",
    "https://exa\tmple.com",
    "http\u200b://example.com",
    "https://example.com/" + "a" * 2048,
    "",
]


def test_attachment_and_image_urls_must_be_http_or_https(rich: Api, turn: dict[str, Any]) -> None:
    path = f"/api/messages/{turn['id']}/attachments"
    for url in BAD_URLS:
        assert_400(rich.post(path, json={"url": url, "size": 1}), url)
        sent = {"message": "Build it", "projectId": turn["projectId"], "imageUrl": url}
        assert_400(rich.post("/api/messages", json=sent), url)
        attachments = [{"url": url, "size": 1}]
        sent = {"message": "Build", "projectId": turn["projectId"], "attachments": attachments}
        assert_400(rich.post("/api/messages", json=sent), url)
    for url in ("https://example.com/a.png", "HTTP://EXAMPLE.COM", "https://例え.jp/画像.png"):
        added = rich.post(path, json={"url": url, "size": 1})
        assert added.status_code == 201, (url, added.text)
        assert added.json()["url"] == url


@pytest.mark.parametrize(
    "field, value",
    [
        ("size", 2**31),
        ("size", 10**12),
        ("size", 10**20),
        ("size", -1),
        ("size", 1.5),
        ("size", 1e308),
        ("width", 100_001),
        ("width", 2**63),
        ("height", -1),
        ("height", 10**30),
    ],
)
def test_huge_or_negative_numbers_are_400(
    rich: Api, turn: dict[str, Any], field: str, value: Any
) -> None:
    body = {"url": "https://example.com/a.png", "size": 1, field: value}
    assert_400(rich.post(f"/api/messages/{turn['id']}/attachments", json=body), body)


@pytest.mark.parametrize(
    "literal", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1" + "0" * 5000]
)
def test_numbers_json_cannot_carry_back_are_400(
    rich: Api, turn: dict[str, Any], literal: str
) -> None:
    path = f"/api/messages/{turn['id']}/attachments"
    for template in (
        '{"url": "https://example.com/a.png", "size": %s}',
        '{"url": "https://example.com/a.png", "size": 1, "sourceMetadata": {"n": %s}}',
    ):
        assert_400(post_raw(rich, path, template % literal), literal)


def test_the_largest_numbers_a_column_holds_are_stored_on_both_databases(
    rich: Api, turn: dict[str, Any]
) -> None:
    body = {
        "url": "https://example.com/a.png",
        "size": 2**31 - 1,
        "width": 100_000,
        "height": 0,
        "sourceMetadata": {"big": 10**30, "small": -(10**30), "float": 1.5e300},
    }
    added = rich.post(f"/api/messages/{turn['id']}/attachments", json=body)
    assert added.status_code == 201, added.text
    got = added.json()
    assert (got["size"], got["width"], got["height"]) == (2**31 - 1, 100_000, 0)
    listed = rich.get(f"/api/messages/{turn['id']}/attachments").json()[-1]
    assert listed["sourceMetadata"] == body["sourceMetadata"]


def test_a_whole_number_written_as_a_float_is_that_integer(rich: Api, turn: dict[str, Any]) -> None:
    raw = '{"url": "https://example.com/a.png", "size": 380.0, "width": 1e2}'
    added = post_raw(rich, f"/api/messages/{turn['id']}/attachments", raw)
    assert added.status_code == 201, added.text
    assert (added.json()["size"], added.json()["width"]) == (380, 100)


def test_too_many_attachments_is_400(rich: Api) -> None:
    project = rich.project()["id"]
    many = [{"url": "https://example.com/a.png", "size": 1}] * 21
    assert_400(
        rich.post(
            "/api/messages", json={"message": "Build", "projectId": project, "attachments": many}
        )
    )


def test_an_idempotency_key_longer_than_255_characters_is_400(rich: Api) -> None:
    project = rich.project()["id"]
    body = {"message": "Build it", "projectId": project}
    assert_400(rich.post("/api/messages", json=body, headers={"Idempotency-Key": "k" * 256}))
    sent = rich.post("/api/messages", json=body, headers={"Idempotency-Key": "k" * 255})
    assert sent.status_code == 201, sent.text
    rich.wait_terminal(sent.json()["messageId"])
