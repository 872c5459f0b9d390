"""Publishing (DESIGN section 18): a stable public URL per project, serving the chosen version
like its preview, switching at once, isolated; owner-only to publish and unpublish."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Api
from tests.test_versions_api import two_versions
from web.api.preview import SANDBOX_POLICY


def test_publish_v1_then_v2_then_unpublish(api: Api, llm: Any, server: str) -> None:
    project, one, two = two_versions(api, llm)
    assert api.get(f"/api/projects/{project['id']}").json()["published"] is None
    first = api.post(f"/api/projects/{project['id']}/publish", json={"fragmentId": one["id"]})
    assert first.status_code == 200, first.text
    url = first.json()["url"]
    assert url.startswith(f"{server}/apps/") and url.endswith("/")
    assert first.json()["fragmentId"] == one["id"]
    assert api.get(f"/api/projects/{project['id']}").json()["published"] == first.json()
    page = httpx.get(url)  # public: no token
    assert page.status_code == 200
    assert page.text == one["files"]["index.html"]
    assert httpx.get(url + "style.css").text == one["files"]["style.css"]
    # Without a body: the latest version, at the same URL, at once.
    second = api.post(f"/api/projects/{project['id']}/publish")
    assert second.status_code == 200, second.text
    assert (second.json()["url"], second.json()["fragmentId"]) == (url, two["id"])
    assert httpx.get(url + "style.css").text == two["files"]["style.css"]
    assert httpx.get(url + "app.js").text == two["files"]["app.js"]
    assert httpx.get(url).status_code == 404  # v2 deleted index.html
    gone = api.delete(f"/api/projects/{project['id']}/publish")
    assert gone.status_code == 200 and gone.json()["published"] is None
    assert httpx.get(url + "style.css").status_code == 404
    # Published again later: the same URL.
    again = api.post(f"/api/projects/{project['id']}/publish", json={"fragmentId": one["id"]})
    assert again.json()["url"] == url
    assert httpx.get(url).text == one["files"]["index.html"]


def test_a_published_app_is_isolated_like_a_preview(api: Api, llm: Any) -> None:
    project, one, _two = two_versions(api, llm)
    url = api.post(f"/api/projects/{project['id']}/publish", json={"fragmentId": one["id"]}).json()[
        "url"
    ]
    page = httpx.get(url, headers={"Cookie": "session=abc"})
    assert page.headers["content-security-policy"] == SANDBOX_POLICY
    assert "allow-same-origin" not in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    assert "set-cookie" not in page.headers
    assert httpx.get(url.rstrip("/")).status_code == 308


def test_only_the_owner_publishes_or_unpublishes(
    api: Api, llm: Any, make_api: Any, server: str
) -> None:
    project, one, _two = two_versions(api, llm)
    other = make_api()
    assert other.post(f"/api/projects/{project['id']}/publish").status_code == 404
    # Nor can anyone publish a version of their own project somewhere else, or another's.
    theirs = other.project()
    answer = other.post(f"/api/projects/{theirs['id']}/publish", json={"fragmentId": one["id"]})
    assert answer.status_code == 404
    url = api.post(f"/api/projects/{project['id']}/publish").json()["url"]
    assert other.delete(f"/api/projects/{project['id']}/publish").status_code == 404
    assert httpx.get(url + "style.css").status_code == 200
    assert httpx.post(f"{server}/api/projects/{project['id']}/publish").status_code == 401


def test_a_project_without_a_version_cannot_be_published(api: Api) -> None:
    project = api.project()
    answer = api.post(f"/api/projects/{project['id']}/publish")
    assert answer.status_code == 400
    assert "no version" in answer.json()["error"]


def test_an_unknown_slug_is_404(server: str) -> None:
    assert httpx.get(f"{server}/apps/no-such-app/").status_code == 404


def test_a_version_of_another_project_is_refused(api: Api, llm: Any) -> None:
    _project, one, _two = two_versions(api, llm)
    elsewhere = api.project()
    answer = api.post(f"/api/projects/{elsewhere['id']}/publish", json={"fragmentId": one["id"]})
    assert answer.status_code == 400
    assert "not a version of this project" in answer.json()["error"]
