"""gunicorn hooks for prometheus-client's multiprocess mode (`--config python:gunicorn_conf`).

The workers write their metrics under PROMETHEUS_MULTIPROC_DIR and any of them answers /metrics
for all. Unset, it defaults to a folder of this gunicorn's own under $DATA_DIR/metrics, set here
in the master before any worker is forked (the workers inherit it). The master empties it before
the first fork, marks each exited worker dead (its live gauges stop counting) and removes the
default folder on exit. Only hooks live here: every other setting stays on the command line.
It lives outside the `web` package on purpose: importing `web` imports prometheus-client, which
must see the folder first.
"""

from __future__ import annotations

import os as _os
import shutil as _shutil
from pathlib import Path as _Path
from typing import Any

_ENV = "PROMETHEUS_MULTIPROC_DIR"
_DEFAULTED = not _os.environ.get(_ENV)
if _DEFAULTED:
    _os.environ[_ENV] = str(
        (_Path(_os.environ.get("DATA_DIR", ".data")) / "metrics" / f"web-{_os.getpid()}").resolve()
    )


def on_starting(server: Any) -> None:
    # The master never imports the app (nor its metrics): it only empties and tends the folder.
    _shutil.rmtree(_os.environ[_ENV], ignore_errors=True)
    _Path(_os.environ[_ENV]).mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _DEFAULTED:
        _shutil.rmtree(_os.environ[_ENV], ignore_errors=True)
