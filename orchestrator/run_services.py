"""What a run needs from its worker process, built once per process (wiring/services.py).

Declared here, apart from the runner, so that the processes that only name it (the Celery app
the web process sends tasks through) do not load the run engine: its types are for the type
checker only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.settings import Settings
from orchestrator.streams.events import EventLog

if TYPE_CHECKING:
    from orchestrator.checks.checker import Checker
    from orchestrator.providers.chain import ProviderChain
    from orchestrator.runs.cancellation import RunHub
    from orchestrator.runs.flusher import Flusher
    from orchestrator.sandboxes.base import SandboxFactory
    from orchestrator.streams.publisher import Publisher


@dataclass(frozen=True)
class RunServices:
    """Everything a run needs, built once per worker process at the Celery edge."""

    settings: Settings
    db: sessionmaker[Session]
    redis: redis.Redis
    events: EventLog
    new_chain: Callable[[], ProviderChain]
    sandboxes: SandboxFactory
    # One per process: the cancel listener and heartbeat of all its runs, their event sink,
    # and the flusher of their content.
    hub: RunHub
    publisher: Publisher
    flusher: Flusher
    # The process's checks of the versions runs leave (DESIGN section 16); None: off.
    checker: Checker | None = None
