"""A live preview of any version: the served files locally; with E2B, the version's sandbox if it
is still running, else a new one holding its files with the dev server started."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from models import Fragment, transaction, utcnow
from orchestrator.contract import LivePreview
from orchestrator.sandboxes.base import Sandbox
from orchestrator.versions.queries import owned

log = logging.getLogger(__name__)


class Reviving(Protocol):
    """A sandbox factory that can find a running sandbox again (E2B's)."""

    @property
    def preview_ttl(self) -> int: ...

    def connect(self, sandbox_id: str, framework: str) -> Any: ...

    def create(self, run_id: str, framework: str) -> Any: ...


@dataclass(frozen=True)
class _Version:
    id: str
    files: dict[str, str]
    framework: str
    sandbox_id: str | None
    sandbox_url: str | None


def live_preview(
    db: sessionmaker[Session],
    user_id: str,
    fragment_id: str,
    *,
    public_url: str,
    sandboxes: Reviving | None,
) -> LivePreview:
    """`sandboxes` is None for the local sandbox, whose previews the web app serves."""
    with transaction(db) as session:
        fragment = owned(session, user_id, fragment_id)
        version = _Version(
            fragment.id,
            dict(fragment.files or {}),
            fragment.framework,
            fragment.sandbox_id,
            fragment.sandbox_url,
        )
    if sandboxes is None:
        return LivePreview(
            sandbox_url=f"{public_url}/preview/{version.id}/", sandbox_id=None, expires_at=None
        )
    expires = utcnow() + timedelta(seconds=sandboxes.preview_ttl)
    # A sandbox of its own (not the served preview) may still be running: reuse it then.
    live = bool(version.sandbox_url and version.sandbox_url.startswith("https://"))
    if (
        live
        and version.sandbox_id
        and sandboxes.connect(version.sandbox_id, version.framework) is not None
    ):
        assert version.sandbox_url is not None
        return LivePreview(
            sandbox_url=version.sandbox_url, sandbox_id=version.sandbox_id, expires_at=expires
        )
    sandbox: Sandbox = sandboxes.create(f"preview-{version.id}", version.framework)
    try:
        sandbox.seed(version.files)
        url = sandbox.preview()
    except BaseException:
        sandbox.kill()
        raise
    assert url is not None
    sandbox.close(keep_alive=True)
    with transaction(db) as session:
        session.execute(
            update(Fragment)
            .where(Fragment.id == version.id)
            .values(sandbox_id=sandbox.id, sandbox_url=url, updated_at=utcnow())
        )
    return LivePreview(sandbox_url=url, sandbox_id=sandbox.id, expires_at=expires)
