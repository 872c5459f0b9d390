"""Pushing a version to a Git remote (DESIGN section 18): one commit naming the version and the
prompt, on top of the branch's head when it exists; a forced push only when asked."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import Message, Role
from orchestrator import messages
from orchestrator.errors import Conflict
from orchestrator.git import clone, push, remotes
from orchestrator.git.commands import GitError
from orchestrator.settings import Settings


@dataclass(frozen=True)
class PushRequest:
    url: str
    branch: str
    token: str | None = None
    message: str | None = None
    force: bool = False


@dataclass(frozen=True)
class Pushed:
    commit: str
    branch: str
    url: str


def push_version(
    db: sessionmaker[Session],
    settings: Settings,
    user_id: str,
    fragment_id: str,
    wanted: PushRequest,
) -> Pushed:
    """The version as one commit on `wanted.branch`; Conflict with git's reason if refused."""
    # Read, then let the connection go: the push may take a while. Another user's version is
    # 404 whatever the URL.
    with db() as session:
        fragment, message, _project = messages.owned_fragment(session, user_id, fragment_id)
        files = dict(fragment.files or {})
        text = wanted.message or commit_message(session, fragment.version, fragment.title, message)
    remote = remotes.check(wanted.url, settings.import_allowed_hosts)
    push.check_branch(wanted.branch)
    with clone.scratch("appforge-push-") as folder:
        try:
            done = push.push(
                remote,
                wanted.branch,
                files,
                text,
                folder,
                token=wanted.token,
                force=wanted.force,
                timeout=settings.import_timeout,
            )
        except push.PushRejected as exc:
            raise Conflict(f"The remote rejected the push: {exc.reason}") from exc
        except GitError as exc:
            raise Conflict(f"The remote could not be read: {exc.reason}") from exc
    return Pushed(done.commit, wanted.branch, wanted.url)


def commit_message(session: Session, version: int, title: str, message: Message) -> str:
    """`Version <n>: <title>`, then the prompt that made it (the turn's user message)."""
    prompt = session.scalar(
        select(Message.content)
        .where(
            Message.conversation_id == message.conversation_id,
            Message.role == Role.USER,
            Message.created_at <= message.created_at,
        )
        .order_by(Message.created_at.desc(), Message.seq.desc())
        .limit(1)
    )
    head = f"Version {version}: {title}".strip()
    body = f"Prompt: {prompt}" if prompt else message.content
    return f"{head}\n\n{body}\n" if body else f"{head}\n"
