"""The development mode's signing secret: random, made once, kept under the data directory.

Only `orchestrator dev` (what `scripts/run` starts) creates it; `orchestrator token` reads it so a
developer can sign in without setting AUTH_SECRET. Outside that mode AUTH_SECRET or AUTH_JWKS_URL
must be set (DESIGN section 15).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "dev-auth-secret"


def path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def read(data_dir: Path) -> str | None:
    """The development secret, if `orchestrator dev` made one here."""
    try:
        value = path(data_dir).read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def ensure(data_dir: Path) -> str:
    """The development secret, made now (readable by its owner only) when there is none yet."""
    found = read(data_dir)
    if found:
        return found
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    target = path(data_dir)
    # O_EXCL: two dev processes starting at once agree on the first one's secret.
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read(data_dir) or value
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
