"""Where the local sandbox keeps its folders (orchestrator/sandboxes/places.py).

As root, sandbox commands run as uids of their own, so their workspace and their template must
be reachable by other users wherever the repository is: a clone under /root, or in a `mktemp -d`
folder (0700, like the ones these tests make), moves its defaults; a folder the operator named is
refused in words that name its setting. What "reachable" means is checked by a real command run
as a sandbox uid (and, with bubblewrap, by a real bind of a template's node_modules).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.sandboxes import places
from orchestrator.sandboxes.local import LocalSandboxFactory
from orchestrator.sandboxes.templates import STAMP, STARTERS, TemplateStore, lock_hash

pytestmark = pytest.mark.needs_root


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A clone's data folder inside a folder only its owner can enter, as /root is."""
    private = Path(tempfile.mkdtemp(prefix="appforge-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    yield private / "repo" / ".data"
    shutil.rmtree(private, ignore_errors=True)
    for home in places.candidate_homes(private / "repo" / ".data"):
        shutil.rmtree(home, ignore_errors=True)


def _handmade_template(templates: Path) -> None:
    """A React template that counts as prepared (the starter's lock stamped, a node_modules),
    with one package file in it: what a build reads through the bind, minus the npm install."""
    react = templates / "react"
    (react / "node_modules" / "probe").mkdir(parents=True)
    (react / "node_modules" / "probe" / "index.js").write_text("reached\n")
    (react / STAMP).write_text(lock_hash(STARTERS / "react" / "app") + "\n")
    for folder in (templates, react, react / "node_modules", react / "node_modules" / "probe"):
        folder.chmod(0o755)


@pytest.mark.parametrize(
    "isolation", ["none", pytest.param("bwrap", marks=pytest.mark.needs_bwrap)]
)
def test_defaults_under_a_private_folder_move_where_sandbox_users_reach_them(
    data_dir: Path, isolation: str
) -> None:
    default_root, default_templates = data_dir / "sandboxes", data_dir / "templates"
    with pytest.raises(ConfigError, match="SANDBOX_ROOT"):
        LocalSandboxFactory(default_root, isolation="none")  # as it was: out of their reach

    chosen = places.choose(data_dir, default_root, default_templates, for_other_users=True)

    home = chosen.root.parent
    assert home in places.candidate_homes(data_dir)
    assert (chosen.root, chosen.templates) == (home / "sandboxes", home / "templates")
    assert home.stat().st_mode & 0o777 == 0o711  # every user passes, none lists or writes
    assert chosen.moved is not None
    assert str(data_dir.parents[1]) in chosen.moved  # the folder that blocks them
    assert "SANDBOX_ROOT and SANDBOX_TEMPLATES" in chosen.moved  # what chooses others
    assert chosen.templates is not None
    _handmade_template(chosen.templates)
    factory = LocalSandboxFactory(
        chosen.root, isolation=isolation, templates=TemplateStore(chosen.templates)
    )
    sandbox = factory.create("reach", "REACT")
    try:
        assert sandbox.uid is not None  # a sandbox uid, not root
        result = sandbox.run("cat node_modules/probe/index.js")
        assert (result.exit_code, result.stdout.splitlines()[0]) == (0, "reached"), result
    finally:
        sandbox.close()
    again = places.choose(data_dir, default_root, default_templates, for_other_users=True)
    assert again == chosen  # the same home every time: what prepare fills, the worker finds


def test_folders_the_operator_named_out_of_reach_are_refused_naming_their_setting(
    data_dir: Path,
) -> None:
    private = data_dir.parents[1]
    named = private / "mine"
    with pytest.raises(ConfigError, match="SANDBOX_ROOT=") as refused:
        places.choose(data_dir, named / "sandboxes", None, for_other_users=True)
    assert f"{private} lacks o+x" in refused.value.message
    with pytest.raises(ConfigError, match="SANDBOX_TEMPLATES=") as refused:
        places.choose(data_dir, Path("/tmp/x"), named / "templates", for_other_users=True)
    assert f"{private} lacks o+x" in refused.value.message
    assert not any(home.exists() for home in places.candidate_homes(data_dir))  # nothing moved


def test_a_fallback_folder_someone_else_made_first_is_not_used(data_dir: Path) -> None:
    shared, in_tmp = places.candidate_homes(data_dir)
    for home in (shared, in_tmp):
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, 65534, 65534)  # nobody got there first
    defaults = (data_dir / "sandboxes", data_dir / "templates")
    with pytest.raises(ConfigError, match="SANDBOX_ROOT and SANDBOX_TEMPLATES") as refused:
        places.choose(data_dir, *defaults, for_other_users=True)
    assert "owned by uid 65534" in refused.value.message

    os.chown(in_tmp, 0, 0)
    in_tmp.chmod(0o777)  # ours, but left open: made private before use
    chosen = places.choose(data_dir, *defaults, for_other_users=True)
    assert chosen.root == in_tmp / "sandboxes"
    assert in_tmp.stat().st_mode & 0o777 == 0o711


def test_without_root_every_folder_is_used_as_configured(data_dir: Path) -> None:
    # Commands then run as the worker's own user, who reaches whatever the worker reaches.
    chosen = places.choose(
        data_dir, data_dir / "sandboxes", data_dir / "templates", for_other_users=False
    )
    assert chosen == places.SandboxPlaces(data_dir / "sandboxes", data_dir / "templates")
