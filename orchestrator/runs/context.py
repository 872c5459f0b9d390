"""What a run starts from: what the model sees (a system prompt per framework, the
conversation's history, the prompt) and the project's latest version, loaded when it is claimed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Attachment, AttachmentType, Framework, Message, Project, Role, Status
from orchestrator import logs
from orchestrator.runs.budget import left_out_note
from orchestrator.runs.pages import PAGING_GUIDE
from orchestrator.sandboxes.templates import SPECS
from orchestrator.versions.base import BaseVersion, load_base, with_file_tree

# The history loaded whole at most; the budget (budget.py) leaves out more when it must.
HISTORY_LIMIT = 100

_BASE = (
    "You are an expert web developer working inside a sandboxed project workspace. "
    "Build what the user asks for by calling tools: write_file to create a file or rewrite it "
    "(always the complete content), edit_file to change part of an existing file (prefer it "
    "for small changes: it replaces one exact, unique piece of text), read_file and "
    "list_files to look around, run_command to install or check things. Paths are relative "
    "to the workspace root. Keep the user informed with short messages. When the app is "
    "complete, call finish with a short title and a one-paragraph summary."
)
_BASE = f"{_BASE} {PAGING_GUIDE}"

FRAMEWORK_NAMES: dict[str, str] = {
    Framework.NEXTJS: "Next.js",
    Framework.REACT: "React",
    Framework.VUE: "Vue",
    Framework.ANGULAR: "Angular",
    Framework.SVELTE: "Svelte",
}

# What the sandbox offers decides what the model is told to build (`SandboxFactory.serves`).
SERVES_STATIC = "static"
SERVES_BUILD = "build"
SERVES_DEV_SERVER = "dev-server"

STATIC_GUIDE = (
    "This sandbox has no build tooling, no package installs and no network, and no dev server "
    "runs in it: the preview serves the workspace's files exactly as they are written. Build "
    "the app as plain static files that a browser opens directly: an index.html at the root "
    "that loads its CSS and JavaScript by relative paths, with no JSX, TypeScript, imports of "
    "npm packages or build step."
)

DEV_SERVER_GUIDE = (
    "The project's dependencies are installed in the sandbox. When you finish, the framework's "
    "dev server is started to preview the app; do not start it yourself."
)


def build_guide(framework: str) -> str:
    """The local sandbox's framework template: what is installed, how to build, what is served."""
    spec = SPECS.get(framework, SPECS[Framework.NEXTJS])
    return (
        f"{spec.guide} The workspace starts with the template's working app: change it into "
        "what the user asks for. Its dependencies are installed (node_modules is read-only) and "
        "the sandbox has no network, so use only the packages package.json already lists; do "
        f"not run npm install. Build the app with run_command `{spec.build_command}` (give it a "
        "timeout of 180 seconds) after your changes and before you finish; when it fails, read "
        f"the error, fix the code and build again. The preview serves the build output "
        f"({spec.output_dir}/); no dev server runs."
    )


def system_prompt(framework: str, serves: str = SERVES_STATIC) -> str:
    if serves == SERVES_BUILD:
        return f"{_BASE}\n\n{build_guide(framework)}"
    if serves == SERVES_DEV_SERVER:
        # An E2B template holds the same starter as the local one (sandbox-templates/).
        guide = SPECS.get(framework, SPECS[Framework.NEXTJS]).guide
        return f"{_BASE}\n\n{guide}\n{DEV_SERVER_GUIDE}"
    # A framework the sandbox cannot build is only named, so the model does not write for it.
    name = FRAMEWORK_NAMES.get(framework, "web")
    wanted = f"The project is set up as a {name} project, but this sandbox cannot build one."
    return f"{_BASE}\n\n{wanted}\n{STATIC_GUIDE}"


def build_messages(
    framework: str,
    history: list[Message],
    prompt: Message,
    attachments: list[Attachment],
    serves: str = SERVES_STATIC,
) -> list[dict[str, Any]]:
    """The chat-completions `messages` for the first step of a run."""
    system = system_prompt(framework, serves)
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    turns = [_turn(past) for past in history]
    kept = [turn for turn in turns[-HISTORY_LIMIT:] if turn is not None]
    left_out = sum(turn is not None for turn in turns[:-HISTORY_LIMIT])
    if left_out:
        out.append(left_out_note(left_out))
    out += kept
    out.append({"role": "user", "content": prompt_content(prompt, attachments)})
    return out


def _turn(past: Message) -> dict[str, Any] | None:
    if past.role == Role.USER:
        return {"role": "user", "content": past.content}
    if past.status == Status.COMPLETE and past.content:
        return {"role": "assistant", "content": past.content}
    return None


def prompt_content(prompt: Message, attachments: list[Attachment]) -> str | list[dict[str, Any]]:
    """Images become image inputs; imported repos and designs become context text."""
    text = prompt.content
    context = [_import_context(a) for a in attachments if a.type != AttachmentType.IMAGE]
    if context:
        text = text + "\n\n" + "\n".join(context)
    images = [a.url for a in attachments if a.type == AttachmentType.IMAGE]
    if prompt.image_url:
        images.insert(0, prompt.image_url)
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return parts


def _import_context(attachment: Attachment) -> str:
    kind = "GitHub repository" if attachment.type == AttachmentType.GITHUB_REPO else "Figma file"
    meta = json.dumps(attachment.source_metadata, default=str) if attachment.source_metadata else ""
    line = f"[Attached {kind}: {attachment.url}"
    if attachment.import_id:
        line += f" (import {attachment.import_id})"
    return line + (f" metadata: {meta}]" if meta else "]")


@dataclass(frozen=True)
class RunContext:
    framework: str
    messages: list[dict[str, Any]]
    prompt_text: str
    image_url: str | None
    attempt: int = 1
    # What an earlier attempt of this run already wrote (a re-run after a worker died).
    earlier_content: str = ""
    earlier_tool_calls: tuple[dict[str, Any], ...] = ()
    # The project's latest version when the run was claimed: what the workspace starts with.
    base: BaseVersion | None = None


def load_context(session: Session, message_id: str, serves: str) -> RunContext:
    assistant = session.get(Message, message_id)
    assert assistant is not None
    project = session.get(Project, assistant.project_id)
    assert project is not None
    earlier = list(
        session.scalars(
            select(Message)
            .where(
                Message.conversation_id == assistant.conversation_id,
                Message.created_at <= assistant.created_at,
                Message.id != assistant.id,
            )
            .order_by(Message.created_at, Message.seq, Message.id)
        )
    )
    prompt = earlier.pop()  # the user turn stored with this assistant message
    logs.set_fields(user_id=assistant.user_id)  # on the run's log lines from now on
    attachments = list(
        session.scalars(select(Attachment).where(Attachment.message_id == prompt.id))
    )
    base = load_base(session, project.id)
    messages = build_messages(project.framework, earlier, prompt, attachments, serves=serves)
    return RunContext(
        framework=project.framework,
        messages=with_file_tree(messages, base),
        base=base,
        prompt_text=prompt.content,
        image_url=prompt.image_url,
        attempt=assistant.attempts,
        earlier_content=assistant.content if assistant.attempts > 1 else "",
        earlier_tool_calls=tuple(assistant.tool_calls or ()) if assistant.attempts > 1 else (),
    )
