"""What every shape of the contract shares: camelCase on the wire, closed objects, UTC times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

T = TypeVar("T")


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and `Z` (DESIGN section 3); naive times are UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ISO_TIME = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
}
Time = Annotated[datetime, PlainSerializer(iso, return_type=str), WithJsonSchema(ISO_TIME)]
Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]


def or_empty(factory: Callable[[], T]) -> BeforeValidator:
    """A column that may hold NULL (or nothing) answers as an empty value of its type."""

    def fill(value: Any) -> Any:
        return value if value else factory()

    return BeforeValidator(fill)


class Shape(BaseModel):
    """A JSON shape of the API: read from a row's attributes (or built by name), written in
    camelCase in the order its fields are declared, every field present (null, not missing)."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(serialization_alias=to_camel),
        from_attributes=True,
        validate_by_name=True,
        extra="forbid",
        json_schema_serialization_defaults_required=True,
    )

    @classmethod
    def of(cls, row: Any, **more: Any) -> Self:
        """This shape read from `row`, with `more` fields given by name (what `row` lacks)."""
        return cls.model_validate(_Joined(row, more))

    def wire(self) -> dict[str, Any]:
        """The JSON value the API sends."""
        return self.model_dump(mode="json", by_alias=True)


class _Joined:
    """A row's attributes, some given anew."""

    def __init__(self, row: Any, more: dict[str, Any]) -> None:
        self._row = row
        self._more = more

    def __getattr__(self, name: str) -> Any:
        return self._more[name] if name in self._more else getattr(self._row, name)
