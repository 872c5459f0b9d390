"""`GET /` and its static files (DESIGN section 13), and the headers that let previews be framed."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.conftest import ROOT, Api

STATIC = ROOT / "web" / "static"


def test_the_page_is_served_with_its_modules_and_a_strict_policy(server: str, api: Api) -> None:
    page = api.get(f"{server}/", headers={"Authorization": ""})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for testid in ("token-input", "sign-in", "project-name", "create-project", "prompt", "send"):
        assert f'data-testid="{testid}"' in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    # No CDN: every script and style the page loads is its own.
    assert "http" not in page.text.split("<body>")[0].replace('name="viewport"', "")
    for name, kind in (("app.js", "javascript"), ("api.js", "javascript"), ("style.css", "css")):
        asset = api.get(f"{server}/static/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"], name


def test_a_preview_may_be_framed_by_the_page_and_runs_on_an_opaque_origin(
    server: str, api: Api, llm: Any
) -> None:
    from tests.test_versions_runs import first_version

    fragment = first_version(api, llm, api.project()["id"])
    preview = api.get(fragment["sandboxUrl"])
    assert preview.status_code == 200
    assert "X-Frame-Options" not in preview.headers
    assert "frame-ancestors" not in preview.headers["Content-Security-Policy"]
    assert preview.headers["Content-Security-Policy"].startswith("sandbox allow-scripts")
    assert "allow-same-origin" not in preview.headers["Content-Security-Policy"]
    page = api.get(f"{server}/").text
    assert 'sandbox="allow-scripts allow-forms allow-modals"' in page


# The vendored modules the page renders markdown with, as web/static/vendor/README.md pins them.
VENDORED = {
    "marked.esm.js": (
        "marked v18.2.1",
        "5371fea86fd0656b4fc7bea7c94c663109d82789b69433eeee78d42895aa44de",
    ),
    "purify.es.js": (
        "DOMPurify 3.5.0",
        "5e8c53cd086a012531fc754ee6a7ad7a02e8a06fc4dadd805b912e128c3f6c58",
    ),
}


def test_the_markdown_modules_are_the_pinned_builds_served_by_the_app(
    server: str, api: Api
) -> None:
    readme = (STATIC / "vendor" / "README.md").read_text()
    for name, (version, digest) in VENDORED.items():
        body = (STATIC / "vendor" / name).read_bytes()
        assert hashlib.sha256(body).hexdigest() == digest, name
        assert digest in readme and version in body.decode()[:2000], name
        served = api.get(f"{server}/static/vendor/{name}")
        assert served.status_code == 200 and served.content == body
        assert "javascript" in served.headers["content-type"], name
