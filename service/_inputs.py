"""Model inputs: ``Input(...)`` and the pydantic model derived from ``predict``'s signature.

A predictor declares its inputs as keyword parameters with type hints, the way Cog's do::

    def predict(self, prompt: str, n: int = Input(default=3, ge=1, le=10)) -> str: ...

:func:`input_model` turns that signature into a pydantic model that validates a request's
``input`` (unknown keys are rejected) and gives the JSON schema for ``/openapi.json``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_type_hints

import pydantic
from pydantic.fields import FieldInfo

__all__ = ["Input", "InputSpec", "PredictorSignatureError", "input_model"]

_MISSING: Any = object()


class PredictorSignatureError(TypeError):
    """``predict``'s signature cannot be turned into an input schema."""


@dataclass(frozen=True)
class InputSpec:
    """What ``Input(...)`` returns: a parameter's default and its constraints."""

    default: Any = _MISSING
    description: str | None = None
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    regex: str | None = None
    choices: Sequence[Any] | None = None

    def field(self, annotation: Any, order: int) -> tuple[Any, FieldInfo]:
        if self.choices is not None:
            if not self.choices:
                raise PredictorSignatureError("choices must not be empty")
            annotation = Literal[tuple(self.choices)]
        info = pydantic.Field(
            default=... if self.default is _MISSING else self.default,
            description=self.description,
            ge=self.ge,
            le=self.le,
            min_length=self.min_length,
            max_length=self.max_length,
            pattern=self.regex,
            json_schema_extra={"x-order": order},
        )
        return annotation, info


def Input(
    default: Any = _MISSING,
    *,
    description: str | None = None,
    ge: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    regex: str | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """Document and constrain one input of ``predict``.

    Without ``default`` the input is required. ``ge``/``le`` bound numbers,
    ``min_length``/``max_length`` bound strings and lists, ``regex`` must match a string,
    ``choices`` lists the only values allowed. Violations are answered ``422``.
    """
    return InputSpec(default, description, ge, le, min_length, max_length, regex, choices)


class _InputBase(pydantic.BaseModel):
    # python-re: ``regex=`` is a Python regular expression (look-arounds and all), as a
    # model author expects; the default Rust engine would reject some at load time.
    model_config = pydantic.ConfigDict(extra="forbid", title="Input", regex_engine="python-re")


def input_model(predict: Callable[..., Any]) -> type[pydantic.BaseModel]:
    """The pydantic model of ``predict``'s keyword inputs.

    Every parameter needs a type hint; ``*args``/``**kwargs`` are not inputs. A parameter
    without a default is required.
    """
    signature = inspect.signature(predict)
    try:
        hints = get_type_hints(predict, include_extras=True)
    except Exception as exc:  # a forward reference that does not resolve, for example
        raise PredictorSignatureError(f"cannot read the type hints of predict: {exc}") from exc
    fields: dict[str, Any] = {}
    for name, param in signature.parameters.items():
        if name == "self":
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise PredictorSignatureError(f"input {name!r} must not be positional-only")
        if name not in hints:
            raise PredictorSignatureError(f"input {name!r} of predict has no type hint")
        annotation = hints[name]
        default = param.default
        # x-order: the parameters' order, which Cog's schema carries for form UIs.
        if isinstance(default, FieldInfo):  # pydantic.Field(...) works as well
            fields[name] = (annotation, default)
            continue
        if not isinstance(default, InputSpec):
            default = InputSpec(_MISSING if default is param.empty else default)
        fields[name] = default.field(annotation, len(fields))
    try:
        with warnings.catch_warnings():
            # An input called `json` or `copy` shadows a BaseModel method: harmless here,
            # the values are read from the validated model's fields.
            warnings.filterwarnings("ignore", message="Field name .* shadows an attribute")
            return pydantic.create_model("Input", __base__=_InputBase, **fields)
    except Exception as exc:  # unsupported type, bad regex, reserved name (`_x`, `model_dump`)
        raise PredictorSignatureError(f"unsupported input in predict: {exc}") from exc
