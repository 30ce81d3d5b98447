"""Wire schemas, for the OpenAPI document. Responses are built as dicts by taskstatus.views and
serialized with orjson; these models describe them (and are checked against them in tests)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from taskstatus.model import CompletionStatus, MessageType, TargetType, TaskType


class LocalizedMessage(BaseModel):
    locale: str = Field(description="Message locale")
    message: str = Field(description="Message text")


class TaskStatusMessage(BaseModel):
    type: MessageType = Field(description="Type of the message")
    localizedText: LocalizedMessage | None = Field(description="Localized form of the message")
    key: str = Field(description="Key of the message")
    parameters: list[dict[str, Any] | str] | None = Field(
        description="Message parameters for internationalization"
    )


class TaskReturnDetails(BaseModel):
    name: str = Field(description="Display name of the TaskReturnDetails")
    attributeName: str = Field(description="Attribute the TaskReturnDetails is for")


class Target(BaseModel):
    id: str | None = Field(None, description="Target ID (the sourceId filter)")
    type: TargetType | None = Field(None, description="Target type")
    name: str | None = Field(None, description="Target name")


class TaskDefinitionSummary(BaseModel):
    id: str = Field(description="System-generated unique ID of the TaskDefinition")
    uniqueName: str = Field(description="Name of the TaskDefinition")
    description: str | None = Field(description="Description of the TaskDefinition")
    parentName: str = Field(description="Name of the parent of the TaskDefinition")
    executor: str | None = Field(description="Executor of the TaskDefinition (import path)")
    arguments: dict[str, Any] = Field(
        description="Formal parameters of the TaskDefinition, without values"
    )


class TaskStatus(BaseModel):
    """Details and current status of a specific task."""

    id: str = Field(description="System-generated unique ID of the task")
    type: TaskType = Field(description="Type of task this TaskStatus represents")
    uniqueName: str = Field(description="Name of the task")
    description: str = Field(description="Description of the task")
    parentName: str | None = Field(description="Name of the parent of the task")
    launcher: str = Field(description="Who launched the task")
    target: Target | None = None
    created: str = Field(description="Creation date (ISO 8601)")
    modified: str = Field(description="Last modification date")
    launched: str | None = Field(description="Launch date")
    completed: str | None = Field(description="Completion date")
    completionStatus: CompletionStatus | None = Field(description="Null while pending")
    messages: list[TaskStatusMessage]
    returns: list[TaskReturnDetails]
    attributes: dict[str, Any]
    progress: str | None = Field(description="Current progress")
    percentComplete: int = Field(description="Current percentage completion")
    taskDefinitionSummary: TaskDefinitionSummary | None = None


class ErrorMessageDto(BaseModel):
    locale: str | None = Field(None, description="The locale of the text, a BCP 47 tag")
    localeOrigin: Literal["DEFAULT", "REQUEST"] | None = None
    text: str | None = Field(None, description="Actual text of the error message")


class ErrorResponseDto(BaseModel):
    detailCode: str = Field(description="Fine-grained error code")
    trackingId: str = Field(description="Unique tracking id, also in the server log")
    messages: list[ErrorMessageDto] = Field(description="Generic localized reason for error")
    causes: list[ErrorMessageDto] | None = Field(None, description="What exactly went wrong")


class Unauthorized401(BaseModel):
    error: str = Field(description="A message describing the error")


class TooManyRequests429(BaseModel):
    message: str = Field(description="A message describing the error")


class JsonPatchOperation(BaseModel):
    """One operation of an RFC 6902 JSON Patch."""

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str = Field(description="A JSON pointer, e.g. /completionStatus")
    value: Any = Field(None, description="The value to add, replace or test")
    from_: str | None = Field(None, alias="from", description="The source pointer of move/copy")


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int
    scope: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponseDto, "description": "Client Error - the request is invalid."},
    401: {
        "model": Unauthorized401,
        "description": "No token, a bad signature or an expired token.",
    },
    403: {"model": ErrorResponseDto, "description": "Forbidden - the token lacks the scope."},
    404: {"model": ErrorResponseDto, "description": "Not Found."},
    429: {"model": TooManyRequests429, "description": "Too Many Requests; see Retry-After."},
    500: {"model": ErrorResponseDto, "description": "Internal Server Error."},
}
