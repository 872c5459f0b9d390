from __future__ import annotations

from typing import Any

from orchestrator import accounts, contract
from web.api.common import unit_of_work
from web.auth import current_user_id
from web.endpoints import Api
from web.state import state

bp = Api("me", __name__, tag="users")


@bp.operation("GET /api/me", answer=contract.Me)
def me() -> Any:
    """Who am I."""
    with unit_of_work() as session:
        return accounts.ensure_user(session, current_user_id(), state().settings.default_credits)
