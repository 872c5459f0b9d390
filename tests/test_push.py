"""POST /api/fragments/<id>/push: a version as one commit on a branch of a real Git remote."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.conftest import Api
from tests.fakes.git_server import GitServer, git
from tests.test_versions_api import two_versions


def tree_of(bare: Path, commit: str) -> dict[str, str]:
    paths = git("ls-tree", "-r", "--name-only", "-z", commit, cwd=bare).split("\0")
    return {path: git("show", f"{commit}:{path}", cwd=bare) for path in paths if path}


def history(bare: Path, branch: str) -> list[str]:
    return git("rev-list", branch, cwd=bare).split()


def name() -> str:
    return f"dest-{uuid.uuid4().hex[:8]}"


def test_v1_then_v2_are_two_commits_whose_trees_are_the_versions(
    api: Api, llm: Any, git_server: GitServer
) -> None:
    _project, one, two = two_versions(api, llm)
    repo = name()
    bare = git_server.bare(repo)
    first = api.post(
        f"/api/fragments/{one['id']}/push", json={"url": git_server.url(repo), "branch": "app"}
    )
    assert first.status_code == 200, first.text
    assert first.json() == {
        "commit": history(bare, "app")[0],
        "branch": "app",
        "url": git_server.url(repo),
    }
    second = api.post(
        f"/api/fragments/{two['id']}/push", json={"url": git_server.url(repo), "branch": "app"}
    )
    assert second.status_code == 200, second.text
    commits = history(bare, "app")
    assert commits == [second.json()["commit"], first.json()["commit"]]
    assert tree_of(bare, commits[1]) == one["files"]
    assert tree_of(bare, commits[0]) == two["files"]
    message = git("log", "-1", "--format=%B", "app", cwd=bare)
    assert message.startswith("Version 2: Blue")
    assert "Prompt: Do it" in message


def test_a_push_lands_on_top_of_the_branchs_head_and_force_replaces_it(
    api: Api, llm: Any, git_server: GitServer
) -> None:
    _project, one, _two = two_versions(api, llm)
    repo = name()
    git_server.repository(repo, {"theirs.txt": b"someone else's work\n"})
    bare = git_server.root / f"{repo}.git"
    theirs = history(bare, "main")
    pushed = api.post(
        f"/api/fragments/{one['id']}/push",
        json={"url": git_server.url(repo), "branch": "main", "message": "From appforge"},
    )
    assert pushed.status_code == 200, pushed.text
    assert history(bare, "main") == [pushed.json()["commit"], *theirs]
    assert git("log", "-1", "--format=%B", "main", cwd=bare).strip() == "From appforge"
    forced = api.post(
        f"/api/fragments/{one['id']}/push",
        json={"url": git_server.url(repo), "branch": "main", "force": True},
    )
    assert forced.status_code == 200, forced.text
    assert history(bare, "main") == [forced.json()["commit"]]
    assert tree_of(bare, "main") == one["files"]


def test_a_rejected_push_is_409_with_gits_reason(api: Api, llm: Any, git_server: GitServer) -> None:
    _project, one, _two = two_versions(api, llm)
    guarded, strict = name(), name()
    hook = git_server.bare(guarded) / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch app is protected by policy' >&2\nexit 1\n")
    hook.chmod(0o755)
    answer = api.post(
        f"/api/fragments/{one['id']}/push", json={"url": git_server.url(guarded), "branch": "app"}
    )
    assert answer.status_code == 409, answer.text
    assert "branch app is protected by policy" in answer.json()["error"]
    # An unrelated history forced onto a branch whose remote refuses to rewrite history.
    git_server.repository(strict, {"theirs.txt": b"x\n"})
    git("config", "receive.denyNonFastForwards", "true", cwd=git_server.root / f"{strict}.git")
    answer = api.post(
        f"/api/fragments/{one['id']}/push",
        json={"url": git_server.url(strict), "branch": "main", "force": True},
    )
    assert answer.status_code == 409, answer.text
    assert "non-fast-forward" in answer.json()["error"]


def test_a_private_remote_takes_a_token_that_appears_nowhere(
    api: Api, llm: Any, git_server: GitServer, make_api: Any
) -> None:
    _project, one, _two = two_versions(api, llm)
    repo = name()
    token = f"ghp_{uuid.uuid4().hex}"
    git_server.private[repo] = token
    bare = git_server.bare(repo)
    url = git_server.url(repo)
    refused = api.post(f"/api/fragments/{one['id']}/push", json={"url": url, "branch": "main"})
    assert refused.status_code == 409, refused.text
    wrong = api.post(
        f"/api/fragments/{one['id']}/push", json={"url": url, "branch": "main", "token": "nope"}
    )
    assert wrong.status_code == 409 and "nope" not in wrong.text
    done = api.post(
        f"/api/fragments/{one['id']}/push", json={"url": url, "branch": "main", "token": token}
    )
    assert done.status_code == 200, done.text
    assert token not in done.text
    assert tree_of(bare, "main") == one["files"]
    assert not any(token in r.split("\n", 1)[0] for r in git_server.requests)
    other = make_api().post(
        f"/api/fragments/{one['id']}/push", json={"url": url, "branch": "main", "token": token}
    )
    assert other.status_code == 404
