"""Users and their credits: every change of a balance is one ledger row, written atomically."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import CreditLedger, Plan, User, new_id, utcnow
from orchestrator.errors import OutOfCredits

# Plain Core tables on the prompt hot path: ORM-enabled statements cost several times more CPU.
USERS = cast(Table, User.__table__)
LEDGER = cast(Table, CreditLedger.__table__)


def ensure_user(session: Session, user_id: str, default_credits: int) -> User:
    """The user row, created on first sight with the default credits (safe under races)."""
    user = session.get(User, user_id)
    if user is not None:
        return user
    try:
        with session.begin_nested():
            user = User(id=user_id, plan=Plan.FREE, credits=default_credits)
            session.add(user)
            session.flush()
            if default_credits:
                session.add(CreditLedger(user_id=user_id, delta=default_credits, reason="signup"))
    except IntegrityError:
        user = session.get(User, user_id, populate_existing=True)
        assert user is not None
    return user


def take_credit(session: Session, user_id: str, message_id: str, default_credits: int) -> str:
    """Spend one credit in the caller's transaction; the user's plan, or OutOfCredits."""
    for _ in range(2):
        plan = session.scalar(
            update(USERS)
            .where(USERS.c.id == user_id, USERS.c.credits > 0)
            .values(credits=USERS.c.credits - 1, updated_at=utcnow())
            .returning(USERS.c.plan)
        )
        if plan is not None:
            session.execute(
                insert(LEDGER).values(
                    id=new_id(),
                    user_id=user_id,
                    delta=-1,
                    reason="prompt",
                    message_id=message_id,
                    created_at=utcnow(),
                )
            )
            return str(plan)
        if session.get(User, user_id) is not None:
            break
        ensure_user(session, user_id, default_credits)  # first sight: create, then try again
    raise OutOfCredits()


def give_credit(
    session: Session, user_id: str, delta: int, reason: str, message_id: str | None
) -> None:
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(credits=User.credits + delta)
        .execution_options(synchronize_session=False)
    )
    session.add(CreditLedger(user_id=user_id, delta=delta, reason=reason, message_id=message_id))


def set_credits(session: Session, user_id: str, credits: int, default_credits: int) -> User:
    user = ensure_user(session, user_id, default_credits)
    session.refresh(user, with_for_update=session.bind.dialect.name != "sqlite")  # type: ignore[union-attr]
    if credits != user.credits:
        give_credit(session, user_id, credits - user.credits, "admin", None)
        session.refresh(user)
    return user


def ledger_balance(session: Session, user_id: str) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(CreditLedger.delta), 0)).where(
                CreditLedger.user_id == user_id
            )
        )
        or 0
    )
