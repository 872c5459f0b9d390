"""The worker machine's metrics endpoint: http://<host>:$WORKER_METRICS_PORT/metrics (DESIGN §11).

Started once, by the `celery worker` main process (a bootstep, before the pool forks), it answers
for every process of that worker: prefork children write their values to files under
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode), and the queue length and the
circuit breakers are read from Redis when scraped.

PROMETHEUS_MULTIPROC_DIR must be set before our metrics are created, so the Celery edge
(`workers/celery_app.py`) calls `default_multiprocess_dir` first thing: unset, it becomes a
fresh folder of this process's own, `$DATA_DIR/metrics/celery-<pid>`, removed when the process
exits. One `celery worker` = one folder: never share one between two running workers.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from celery import bootsteps, signals

from orchestrator.settings import env_data_dir, environ

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"


def default_multiprocess_dir(env: dict[str, str] | None = None) -> str:
    """This process's metrics folder (children inherit it); no prometheus import happens here."""
    given = environ() if env is None else env
    chosen = given.get(ENV)
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        _multiprocess_values_from_now_on()
        return chosen
    pid = os.getpid()
    folder = (env_data_dir(given) / "metrics" / f"celery-{pid}").resolve()
    shutil.rmtree(folder, ignore_errors=True)  # a dead process's, with the same pid
    folder.mkdir(parents=True, exist_ok=True)
    environ()[ENV] = str(folder)

    def remove() -> None:
        if os.getpid() == pid:  # not in a forked child that exits normally
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    _multiprocess_values_from_now_on()
    return str(folder)


def _multiprocess_values_from_now_on() -> None:
    """prometheus-client picks its value class when first imported, from the environment.

    Celery's command line loads its plug-ins' commands before our module (Flower's imports
    prometheus-client), so the choice may already be made without the folder: make it again.
    Every metric created from now on (ours, in orchestrator/metrics.py) writes to the folder.
    """
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


class MetricsServer(bootsteps.Step):  # type: ignore[misc]
    """Serves the worker's metrics from its main process, when WORKER_METRICS_PORT is set."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        settings = parent.app.settings
        port = settings.worker_metrics_port
        if not port:
            return
        from prometheus_client import start_http_server

        from orchestrator import metrics
        from orchestrator.wiring.clients import redis_client
        from orchestrator.wiring.services import build_breaker

        client = redis_client(settings)
        extra: list[Any] = [metrics.QueueLength(client, settings.queue_name)]
        breaker = build_breaker(settings)
        if breaker is not None:
            extra.append(metrics.CircuitState(breaker, [p.name for p in settings.providers]))
        try:
            start_http_server(port, registry=metrics.scrape_registry(*extra))
        except OSError as exc:
            log.warning("worker metrics: cannot listen on port %s: %s", port, exc)
            return
        log.info("worker metrics on http://0.0.0.0:%s/metrics", port)


@signals.worker_process_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
def _child_exit(**_: Any) -> None:
    # A prefork child's live gauges (runs in progress) stop counting once it is gone.
    from orchestrator.metrics import process_dead

    process_dead(os.getpid())
