"""Every URL an import or a push may not use answers 400 with a sentence and creates nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from models import Import
from tests.conftest import Api
from tests.fakes.git_server import GitServer

REFUSED = [
    ("file:///etc/passwd", "Only https://"),
    ("ssh://git@github.com/acme/app.git", "Only https://"),
    ("git://github.com/acme/app.git", "Only https://"),
    ("git@github.com:acme/app.git", "https://"),
    ("https://user:ghp_secret@github.com/acme/app.git", "must not carry credentials"),
    ("https://127.0.0.1/acme/app.git", "not allowed"),
    ("https://10.0.0.8/acme/app.git", "not allowed"),
    ("https://192.168.0.10/acme/app.git", "not allowed"),
    ("https://[fe80::1]/acme/app.git", "not allowed"),
    ("https://169.254.169.254/latest/meta-data/", "not allowed"),
    # Allowed by name (the test settings list it), but it resolves to a loopback address.
    ("https://localhost/acme/app.git", "non-public address"),
    ("https://example.com/acme/app.git", "example.com is not allowed"),
]


def imports_of(db: Any, project_id: str) -> int:
    with db() as session:
        return int(session.scalar(select(func.count()).where(Import.project_id == project_id)) or 0)


@pytest.mark.parametrize(("url", "words"), REFUSED)
def test_a_refused_url_is_400_with_a_sentence_and_creates_nothing(
    api: Api, db: Any, url: str, words: str
) -> None:
    project = api.project()
    answer = api.post(f"/api/projects/{project['id']}/imports", json={"url": url})
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    assert "ghp_secret" not in answer.text
    assert imports_of(db, project["id"]) == 0
    assert api.get(f"/api/projects/{project['id']}/versions").json() == []


def test_a_plain_http_url_of_an_allowed_origins_host_on_another_port_is_refused(
    api: Api, git_server: GitServer, db: Any
) -> None:
    project = api.project()
    other = f"http://127.0.0.1:{git_server.port + 1}/x.git"
    answer = api.post(f"/api/projects/{project['id']}/imports", json={"url": other})
    assert answer.status_code == 400
    assert "Only https://" in answer.json()["error"]
    assert imports_of(db, project["id"]) == 0


def test_a_push_to_a_refused_url_is_400_too(api: Api, llm: Any) -> None:
    from tests.test_versions_api import two_versions

    _project, one, _two = two_versions(api, llm)
    for url, words in REFUSED:
        answer = api.post(f"/api/fragments/{one['id']}/push", json={"url": url, "branch": "main"})
        assert answer.status_code == 400, (url, answer.text)
        assert words in answer.json()["error"]


def test_bad_bodies_are_400(api: Api) -> None:
    project = api.project()
    for body in ({}, {"url": 5}, {"url": "https://github.com/a/b", "extra": 1},
                 {"url": "https://github.com/a/b", "ref": "--upload-pack=x"},
                 {"url": "https://github.com/a/b", "type": "IMAGE"}):  # fmt: skip
        answer = api.post(f"/api/projects/{project['id']}/imports", json=body)
        assert answer.status_code == 400, (body, answer.text)
    assert api.post("/api/projects/nope/imports", json={"url": "x"}).status_code == 404
