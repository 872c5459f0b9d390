"""The `orchestrator` console script at the Celery edge: the core's CLI with a real revoke.

The core's CLI cannot import Celery, so the one command that needs it (`runs cancel`, which
must drop a queued task as DELETE does) gets it from here.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.settings import Settings
from orchestrator.wiring import cli


def _revoke(settings: Settings) -> Callable[[str], None]:
    from workers.app import create_celery
    from workers.dispatch import revoke_run

    app = create_celery(settings)
    return lambda run_id: revoke_run(app, run_id)


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, revoke=_revoke)


if __name__ == "__main__":
    raise SystemExit(main())
