"""The schemas of the OpenAPI description: request bodies from the pydantic models in
`web.schemas` (so the description cannot drift from what the views accept), and response
shapes that mirror `orchestrator.serialize`.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from web import schemas

JSON = "application/json"
REF = "#/components/schemas/{model}"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
PUBLIC: list[dict[str, list[str]]] = []

ISO_TIME = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
}
UUID = {"type": "string", "format": "uuid"}
FRAMEWORK = {"type": "string", "enum": ["NEXTJS", "ANGULAR", "REACT", "VUE", "SVELTE"]}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def shape(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A closed object: a field the server adds without describing it here breaks the schema."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def extended(base: dict[str, Any], **more: Any) -> dict[str, Any]:
    """`base` with more (or narrower) properties, all required."""
    required = [*base["required"], *(name for name in more if name not in base["required"])]
    return shape({**base["properties"], **more}, required)


def array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": ref(name)}


PROJECT = shape(
    {
        "id": UUID,
        "userId": {"type": "string"},
        "name": {"type": "string"},
        "framework": FRAMEWORK,
        "createdAt": ISO_TIME,
        "updatedAt": ISO_TIME,
    }
)
CONVERSATION = shape(
    {
        "id": UUID,
        "projectId": UUID,
        "title": {"type": "string"},
        "createdAt": ISO_TIME,
        "updatedAt": ISO_TIME,
    }
)
TOOL_CALL = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "args": {"description": "The parsed arguments the model sent."},
        "result": {"description": "A JSON object; null while the tool runs."},
    },
    "required": ["id", "name"],
}
MESSAGE = shape(
    {
        "id": UUID,
        "conversationId": UUID,
        "projectId": UUID,
        "userId": {"type": "string"},
        "role": {"type": "string", "enum": ["USER", "ASSISTANT"]},
        "content": {"type": "string"},
        "type": {"type": "string", "enum": ["RESULT", "ERROR", "STREAMING"]},
        "status": {
            "type": "string",
            "enum": ["PENDING", "STREAMING", "COMPLETE", "FAILED", "CANCELLED"],
        },
        "runId": nullable(UUID),
        "toolCalls": {"type": "array", "items": TOOL_CALL},
        "imageUrl": nullable({"type": "string"}),
        "error": nullable({"type": "string"}),
        "metadata": {
            "type": "object",
            "description": "Which provider and model served the run, attempts, token usage.",
        },
        "createdAt": ISO_TIME,
        "updatedAt": ISO_TIME,
    }
)
FRAGMENT = shape(
    {
        "id": UUID,
        "messageId": UUID,
        "sandboxId": nullable({"type": "string"}),
        "sandboxUrl": nullable({"type": "string"}),
        "title": {"type": "string"},
        "files": {"type": "object", "additionalProperties": {"type": "string"}},
        "metadata": {"type": "object"},
        "framework": FRAMEWORK,
        "imageUrl": nullable({"type": "string"}),
        "designSpec": {"description": "Any JSON value, or null."},
        "version": {"type": "integer", "minimum": 1},
        "parentId": nullable(UUID),
        "changes": ref("Changes"),
        "createdAt": ISO_TIME,
        "updatedAt": ISO_TIME,
    }
)
# GET /api/messages lists a fragment's file paths; its files are at /api/messages/{id}/fragment.
LISTED_FRAGMENT = shape(
    {
        **{k: v for k, v in FRAGMENT["properties"].items() if k != "files"},
        "filePaths": {"type": "array", "items": {"type": "string"}},
    }
)
# A public share: only these keys of `metadata`, never attempt logs, provider errors or the
# sandbox's details (DESIGN section 15).
PUBLIC_FRAGMENT = shape(
    {
        **FRAGMENT["properties"],
        "metadata": {
            "type": "object",
            "properties": {
                "summary": {},
                "title": {},
                "steps": {},
                "stopReason": {},
            },
            "additionalProperties": False,
        },
    }
)
PATHS = {"type": "array", "items": {"type": "string"}}
CHANGES = shape({"added": PATHS, "modified": PATHS, "deleted": PATHS})
VERSION = shape(
    {
        "id": UUID,
        "messageId": UUID,
        "version": {"type": "integer", "minimum": 1},
        "parentId": nullable(UUID),
        "title": {"type": "string"},
        "changes": ref("Changes"),
        "createdAt": ISO_TIME,
    }
)
DIFF = shape(
    {
        "fragmentId": UUID,
        "parentId": nullable(UUID),
        "files": {
            "type": "array",
            "items": shape(
                {
                    "path": {"type": "string"},
                    "change": {"type": "string", "enum": ["added", "modified", "deleted"]},
                    "diff": {"type": "string", "description": "A unified diff against the parent"},
                }
            ),
        },
    }
)
ATTACHMENT = shape(
    {
        "id": UUID,
        "messageId": UUID,
        "type": {"type": "string", "enum": ["IMAGE", "FIGMA_FILE", "GITHUB_REPO"]},
        "url": {"type": "string"},
        "size": {"type": "integer", "minimum": 0},
        "width": nullable({"type": "integer"}),
        "height": nullable({"type": "integer"}),
        "importId": nullable({"type": "string"}),
        "sourceMetadata": {"description": "Any JSON value, or null."},
        "createdAt": ISO_TIME,
        "updatedAt": ISO_TIME,
    }
)
ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string", "minLength": 1}},
    "required": ["error"],
}

RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": ERROR,
    "RunInProgress": {
        "type": "object",
        "properties": {
            "error": {"const": "A message is already being processed"},
            "messageId": nullable(UUID),
        },
        "required": ["error", "messageId"],
    },
    "Me": shape(
        {
            "userId": {"type": "string"},
            "plan": {"type": "string", "enum": ["FREE", "PRO"]},
            "credits": {"type": "integer"},
        }
    ),
    "Project": PROJECT,
    "Conversation": CONVERSATION,
    "Message": MESSAGE,
    "ListedMessage": extended(
        MESSAGE, codeFragment=nullable(ref("ListedFragment")), attachments=array("Attachment")
    ),
    "SentMessage": extended(
        MESSAGE, success={"const": True}, runId=UUID, messageId=UUID, role={"const": "USER"}
    ),
    "Fragment": FRAGMENT,
    "ListedFragment": LISTED_FRAGMENT,
    "PublicFragment": PUBLIC_FRAGMENT,
    "Changes": CHANGES,
    "Version": VERSION,
    "Diff": DIFF,
    "Restored": shape({"message": ref("Message"), "fragment": ref("Fragment")}),
    "LivePreview": shape(
        {
            "sandboxUrl": {"type": "string"},
            "sandboxId": nullable({"type": "string"}),
            "expiresAt": nullable(ISO_TIME),
        }
    ),
    "FragmentWithOwner": shape(
        {"fragment": ref("Fragment"), "message": ref("Message"), "project": ref("Project")}
    ),
    "Attachment": ATTACHMENT,
    "Success": shape({"success": {"const": True}}),
    "EventsToken": shape(
        {
            "token": {"type": "string", "minLength": 1},
            "expiresAt": ISO_TIME,
        }
    ),
}

REQUEST_MODELS = (
    schemas.CreateProject,
    schemas.CreateConversation,
    schemas.SendMessage,
    schemas.AttachmentBody,
    schemas.CancelMessage,
    schemas.RestoreFragment,
)


# What Python's str.strip() removes, spelled out: ECMA's \s is a slightly different set.
SPACE = r"[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
INK = SPACE.replace("[", "[^", 1)
# 3 to 1000 characters once trimmed: the first and last non-space, and 1 to 998 between.
PROMPT = {"type": "string", "pattern": f"^{SPACE}*{INK}[\\s\\S]{{1,998}}{INK}{SPACE}*$"}


def present(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": [name], "properties": {name: schema}}


def request_schemas() -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in REQUEST_MODELS], ref_template=REF)
    found: dict[str, Any] = top["$defs"]
    # The rules the view checks across fields, which the model alone does not state.
    found["SendMessage"]["description"] = (
        "`message` (or its alias `value`, used when `message` is absent or null) is 3 to 1000 "
        "characters after trimming. `projectId` or `conversationId` is required; with only "
        "`projectId` the project's default conversation is used, and when both are given they "
        "must agree (else 400)."
    )
    found["SendMessage"]["allOf"] = [
        {
            "anyOf": [
                present("message", PROMPT),
                {
                    "required": ["value"],
                    "properties": {"value": PROMPT, "message": {"type": "null"}},
                },
            ]
        },
        {
            "anyOf": [
                present("projectId", {"type": "string"}),
                present("conversationId", {"type": "string"}),
            ]
        },
    ]
    return found
