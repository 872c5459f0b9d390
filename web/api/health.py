from __future__ import annotations

from typing import Any

from pydantic import ConfigDict
from sqlalchemy import text

from orchestrator.contract import Shape
from web import metrics as web_metrics
from web.endpoints import Api, Raw
from web.state import state

bp = Api("health", __name__, tag="operations")


class Health(Shape):
    """`status`, and for readiness one line per dependency ("ok" or why not)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str]
    status: str


@bp.operation("GET /healthz", answer=Health, auth="public")
def healthz() -> Any:
    """Liveness."""
    return Health.model_validate({"status": "ok"})


@bp.operation("GET /readyz", answer=Health, also={503: Health}, auth="public")
def readyz() -> Any:
    """Readiness: the database and Redis answer."""
    checks: dict[str, str] = {}
    try:
        with state().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:
        state().redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    status = "ok" if ready else "unavailable"
    return Health.model_validate({"status": status, **checks}), 200 if ready else 503


@bp.operation("GET /metrics", answer=Raw("text/plain", "Prometheus text format"), auth="public")
def metrics() -> Any:
    """Prometheus metrics."""
    return web_metrics.answer()
