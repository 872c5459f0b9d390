"""The real Vercel AI SDK (`ai`, pinned in tests/node/package-lock.json), run by Node.

`npm ci` installs it once into a cache folder keyed by the lock file's hash, so a clean clone (CI)
installs it itself and later sessions reuse it. Locally a missing node or npm skips the tests
that need it; with CI=true it fails them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import unavailable

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = "read_ui_stream.mjs"


def sdk_dir() -> Path:
    """The cache folder with the pinned SDK installed, and the reader script beside it."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node and npm are not installed (Debian: apt-get install nodejs npm)")
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock + (NODE_DIR / "package.json").read_bytes()).hexdigest()[:12]
    home = Path(os.environ.get("AI_SDK_CACHE_DIR", tempfile.gettempdir()))
    target = home / f"appforge-ai-sdk-{digest}"
    if not (target / "node_modules" / "ai" / "package.json").exists():
        # Installed beside, then renamed: a concurrent or broken install leaves no half folder.
        staging = home / f".appforge-ai-sdk-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(NODE_DIR / name, staging / name)
        done = subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise AssertionError(f"npm ci of the AI SDK failed: {done.stderr[-2000:]}")
        try:
            staging.rename(target)
        except OSError:  # another session installed it first
            shutil.rmtree(staging, ignore_errors=True)
    shutil.copy(NODE_DIR / SCRIPT, target / SCRIPT)  # the script as this checkout has it
    return target


def read(where: Path, *args: str, token: str, last_event_id: str | None = None) -> Any:
    """What the SDK made of a stream: {status, headers, frames, chunks, errors, message}."""
    env = {**os.environ, "TOKEN": token}
    if last_event_id:
        env["LAST_EVENT_ID"] = last_event_id
    done = subprocess.run(
        ["node", str(where / SCRIPT), *args],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def chat(where: Path, api: str, body: dict[str, Any], *, token: str) -> Any:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(body, file)
    try:
        return read(where, "chat", api, file.name, token=token)
    finally:
        os.unlink(file.name)
