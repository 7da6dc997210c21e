"""The input schema derived from ``predict``'s signature, and how requests are held to it."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from service import Input, PredictorLoadError
from service._inputs import PredictorSignatureError, input_model
from service._predictor import wrap_predictor

from .conftest import running_app


def constrained(
    prompt: str = Input(description="What to say"),
    n: int = Input(default=3, ge=1, le=10, description="How many times"),
    word: str = Input(default="abc", min_length=2, max_length=5),
    code: str = Input(default="ab-1", regex=r"^[a-z]+-\d$"),
    color: str = Input(default="red", choices=["red", "green"]),
    scale: float = 1.5,
    tags: list[str] = Input(default=[], max_length=2),  # noqa: B008
) -> str:
    return f"{prompt}:{n}:{word}:{code}:{color}:{scale}:{tags}"


def test_required_and_default_parameters() -> None:
    def predict(
        self: Any, a: str, b: int = 4, c: str = Input(), d: float = Input(default=0.5)
    ) -> str:
        return ""

    model = input_model(predict)
    schema = model.model_json_schema()
    assert sorted(schema["required"]) == ["a", "c"]
    assert schema["properties"]["b"]["default"] == 4
    assert schema["properties"]["d"]["default"] == 0.5
    assert "self" not in schema["properties"]
    # Cog's schema orders the inputs for form UIs with x-order: the signature's order.
    assert [schema["properties"][k]["x-order"] for k in "abcd"] == [0, 1, 2, 3]
    validated = model.model_validate({"a": "x", "c": "y"})
    assert (validated.a, validated.b, validated.c, validated.d) == ("x", 4, "y", 0.5)  # type: ignore[attr-defined]


def test_constraints_are_in_the_schema() -> None:
    props = input_model(constrained).model_json_schema()["properties"]
    assert props["prompt"]["description"] == "What to say"
    assert (props["n"]["minimum"], props["n"]["maximum"]) == (1, 10)
    assert props["n"]["description"] == "How many times"
    assert (props["word"]["minLength"], props["word"]["maxLength"]) == (2, 5)
    assert props["code"]["pattern"] == r"^[a-z]+-\d$"
    assert props["color"]["enum"] == ["red", "green"]
    assert props["tags"]["maxItems"] == 2
    assert props["scale"] == {"default": 1.5, "title": "Scale", "type": "number", "x-order": 5}


@pytest.mark.parametrize(
    ("inputs", "field", "error_type"),
    [
        ({"n": 0}, "n", "greater_than_equal"),
        ({"n": 11}, "n", "less_than_equal"),
        ({"word": "a"}, "word", "string_too_short"),
        ({"word": "abcdef"}, "word", "string_too_long"),
        ({"code": "AB-1"}, "code", "string_pattern_mismatch"),
        ({"color": "blue"}, "color", "literal_error"),
        ({"tags": ["a", "b", "c"]}, "tags", "too_long"),
        ({"n": "many"}, "n", "int_parsing"),
        ({"scale": [1]}, "scale", "float_type"),
        ({"prompt": None}, "prompt", "string_type"),
    ],
)
def test_constraint_violations_are_rejected(
    inputs: dict[str, Any], field: str, error_type: str
) -> None:
    model = input_model(constrained)
    with pytest.raises(pydantic.ValidationError) as info:
        model.model_validate({"prompt": "hi", **inputs})
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [((field,), error_type)]


def test_regex_is_a_python_regex() -> None:
    # Look-arounds are Python syntax the default (Rust) engine of pydantic rejects.
    def predict(name: str = Input(regex=r"^(?!admin$)[a-z]+$")) -> str:
        return name

    model = input_model(predict)
    assert model.model_validate({"name": "alice"})
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({"name": "admin"})


def test_unknown_keys_are_rejected_one_entry_each() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        input_model(constrained).model_validate({"prompt": "hi", "x": 1, "y": 2})
    assert sorted((e["loc"], e["type"]) for e in info.value.errors()) == [
        (("x",), "extra_forbidden"),
        (("y",), "extra_forbidden"),
    ]


def test_varargs_are_not_inputs() -> None:
    def predict(a: int, *args: Any, **kwargs: Any) -> int:
        return a

    assert list(input_model(predict).model_fields) == ["a"]


def test_pydantic_field_works_as_a_default() -> None:
    def predict(a: int = pydantic.Field(default=2, ge=1)) -> int:
        return a

    model = input_model(predict)
    assert model.model_validate({}).a == 2  # type: ignore[attr-defined]
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({"a": 0})


def test_input_named_like_a_model_method() -> None:
    def predict(json: str, copy: int = 1) -> str:
        return json

    validated = input_model(predict).model_validate({"json": "x"})
    assert {name: getattr(validated, name) for name in ("json", "copy")} == {"json": "x", "copy": 1}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def predict(self, prompt, n: int = 1): ...", "'prompt' of predict has no type hint"),
        ("def predict(self, x: int, /): ...", "'x' must not be positional-only"),
        ("def predict(self, x: 'Missing'): ...", "cannot read the type hints"),
        ("def predict(self, _x: int): ...", "leading underscores"),
        ("def predict(self, x: str = Input(regex='(')): ...", "unsupported input"),
        ("def predict(self, x: str = Input(choices=[])): ...", "choices must not be empty"),
    ],
)
def test_bad_signature_is_a_clear_load_error(source: str, message: str) -> None:
    namespace: dict[str, Any] = {"Input": Input}
    exec(f"class Predictor:\n    {source}", namespace)
    with pytest.raises(PredictorLoadError, match="Predictor") as info:
        wrap_predictor(namespace["Predictor"])
    assert message in str(info.value)
    assert isinstance(info.value.__cause__, PredictorSignatureError)


# -- the same, over HTTP ------------------------------------------------------------------


async def test_http_validation_errors_one_entry_per_field() -> None:
    async with running_app(constrained) as (_, client):
        r = await client.post(
            "/predictions", json={"input": {"n": 99, "word": 5, "bogus": 1, "other": True}}
        )
        assert r.status_code == 422
        detail = (await r.get_json())["detail"]
        found = sorted((tuple(e["loc"]), e["type"]) for e in detail)
        assert found == [
            (("body", "input", "bogus"), "extra_forbidden"),
            (("body", "input", "n"), "less_than_equal"),
            (("body", "input", "other"), "extra_forbidden"),
            (("body", "input", "prompt"), "missing"),
            (("body", "input", "word"), "string_type"),
        ]
        assert all(isinstance(e["msg"], str) and e["msg"] for e in detail)


async def test_http_valid_input_reaches_the_model_with_defaults() -> None:
    async with running_app(constrained) as (_, client):
        r = await client.post(
            "/predictions", json={"input": {"prompt": "hi", "n": "7", "color": "green"}}
        )
        assert r.status_code == 200
        body = await r.get_json()
        assert body["output"] == "hi:7:abc:ab-1:green:1.5:[]"
        # `input` is what the client sent, not the validated values.
        assert body["input"] == {"prompt": "hi", "n": "7", "color": "green"}


async def test_openapi_input_schema_carries_the_constraints() -> None:
    async with running_app(constrained) as (_, client):
        doc = await (await client.get("/openapi.json")).get_json()
    schema = doc["components"]["schemas"]["Input"]
    assert schema["required"] == ["prompt"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["prompt"]["description"] == "What to say"
    assert (props["n"]["minimum"], props["n"]["maximum"], props["n"]["default"]) == (1, 10, 3)
    assert (props["word"]["minLength"], props["word"]["maxLength"]) == (2, 5)
    assert props["code"]["pattern"] == r"^[a-z]+-\d$"
    assert props["color"]["enum"] == ["red", "green"]
