"""GET /api/fragments/<id>/archive: the version's files as a zip, streamed, owner-only."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx

from tests.conftest import Api
from tests.test_versions_api import two_versions


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_the_zip_equals_the_version_byte_for_byte(api: Api, llm: Any) -> None:
    _project, one, two = two_versions(api, llm)
    for version in (one, two):
        answer = api.get(f"/api/fragments/{version['id']}/archive")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/zip"
        assert "attachment" in answer.headers["content-disposition"]
        assert ".zip" in answer.headers["content-disposition"]
        files = unzip(answer.content)
        assert files == {path: text.encode() for path, text in version["files"].items()}
    # Written as it is sent: no length known up front.
    assert "content-length" not in answer.headers


def test_the_zip_is_the_owners_alone(api: Api, llm: Any, make_api: Any, server: str) -> None:
    _project, one, _two = two_versions(api, llm)
    assert make_api().get(f"/api/fragments/{one['id']}/archive").status_code == 404
    assert httpx.get(f"{server}/api/fragments/{one['id']}/archive").status_code == 401
    assert api.get("/api/fragments/missing/archive").status_code == 404


def test_a_large_version_with_many_files_zips_whole() -> None:
    """The streaming writer itself: many files, large ones and unusual names survive."""
    from datetime import UTC, datetime

    from orchestrator.versions.archive import zip_stream

    files = {f"dir{n % 7}/f{n}.txt": f"line {n}\n" * (n * 50) for n in range(300)}
    files["big.txt"] = "x" * (3 * 1024 * 1024)
    files["ünï cødé/名前.md"] = "# héllo\n"
    chunks = list(zip_stream(files, datetime(2026, 12, 2, tzinfo=UTC)))
    assert len(chunks) > 2
    assert unzip(b"".join(chunks)) == {path: text.encode() for path, text in files.items()}
