"""gunicorn hooks for prometheus-client's multiprocess mode (`--config python:gunicorn_conf`).

The workers write their metrics under PROMETHEUS_MULTIPROC_DIR and any of them answers /metrics
for all. Unset, it defaults to a folder of this gunicorn's own under $DATA_DIR/metrics, set here
in the master before any worker is forked (the workers inherit it). The folder is emptied when
this configuration loads, before the first fork; the master marks each exited worker dead (its
live gauges stop counting) and removes the default folder on exit. Only hooks live here: every
other setting stays on the command line.
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
# Emptied now, while gunicorn loads its configuration: the master imports `web` itself (for the
# logger class), and what it writes must land in a folder that exists.
_shutil.rmtree(_os.environ[_ENV], ignore_errors=True)
_Path(_os.environ[_ENV]).mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _DEFAULTED:
        _shutil.rmtree(_os.environ[_ENV], ignore_errors=True)
