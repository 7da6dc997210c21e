"""The wire formats: the prediction request a client sends and the prediction it gets back."""

from __future__ import annotations

import enum
import json
import math
from typing import Annotated, Any, Literal

import httpx
import pydantic
import pydantic_core

__all__ = [
    "ALL_EVENTS",
    "ID_PATTERN",
    "PredictionRequest",
    "PredictionResponse",
    "Status",
    "WebhookEvent",
    "parse_json",
    "to_json",
]

WebhookEvent = Literal["start", "output", "logs", "completed"]
ALL_EVENTS: frozenset[str] = frozenset({"start", "output", "logs", "completed"})

#: A client-chosen prediction id: 1 to 128 characters of these (safe in paths and logs).
ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"
PredictionId = Annotated[str, pydantic.StringConstraints(pattern=ID_PATTERN)]


class Status(enum.StrEnum):
    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)


class PredictionRequest(pydantic.BaseModel):
    """The body of ``POST /predictions`` and ``PUT /predictions/{id}``.

    Unknown top-level keys are ignored, as Cog does (clients send ``output_file_prefix``);
    unknown keys *inside* ``input`` are rejected by the predictor's input model.
    """

    model_config = pydantic.ConfigDict(extra="ignore")

    id: PredictionId | None = None
    input: dict[str, Any] = pydantic.Field(default_factory=dict)
    webhook: pydantic.HttpUrl | None = None
    webhook_events_filter: list[WebhookEvent] | None = None

    @pydantic.field_validator("webhook")
    @classmethod
    def _usable_webhook(cls, url: pydantic.HttpUrl | None) -> pydantic.HttpUrl | None:
        if url is None:
            return url
        if url.username or url.password:
            raise ValueError("webhook URL must not carry credentials; use WEBHOOK_AUTH_TOKEN")
        try:
            # What the webhook client will parse: a URL pydantic takes and httpx does not
            # (a host that IDNA 2008 forbids, like "xn--n3h.net") could never be delivered.
            httpx.Request("POST", str(url))
        except (httpx.InvalidURL, ValueError) as exc:
            raise ValueError(f"webhook URL cannot be used: {exc}") from None
        return url


class PredictionResponse(pydantic.BaseModel):
    """The prediction object, as every endpoint and webhook renders it (for the schema)."""

    id: str
    status: Status
    input: dict[str, Any]
    output: Any = None
    logs: str = ""
    error: str | None = None
    metrics: dict[str, float] | None = None
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    webhook: str | None = None
    webhook_events_filter: list[WebhookEvent]


def to_json(body: Any) -> bytes:
    """Serialise a prediction (or any response body) so that no model output or log line
    can make it fail: values JSON cannot represent are sent as their ``str``, NaN and
    infinities as ``null`` (strict JSON, as every client parses it), and lone surrogates
    (which UTF-8 cannot encode) as ``?``."""
    try:
        return pydantic_core.to_json(body, fallback=str, inf_nan_mode="null")
    except pydantic_core.PydanticSerializationError:
        plain = pydantic_core.to_jsonable_python(body, fallback=str, inf_nan_mode="null")
        return json.dumps(plain, ensure_ascii=False).encode("utf-8", "replace")


def parse_json(raw: str | bytes) -> Any:
    """Parse a request body as strict JSON; raises ``ValueError`` with the reason.

    No NaN or Infinity, and no number so large that it becomes one (``1e999``): none
    could be echoed back as JSON, and a model must not get an input its prediction then
    shows as ``null``. No lone surrogates, and a nesting limit instead of a RecursionError.
    """
    body = pydantic_core.from_json(raw, allow_inf_nan=False)
    stack = [body]
    while stack:  # iterative: the nesting is bounded by the parser, not by us
        value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a number is out of range (larger than about 1.8e308)")
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return body
