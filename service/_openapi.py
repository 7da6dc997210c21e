"""The OpenAPI 3.1 document, with the request's ``input`` schema taken from ``predict``."""

from __future__ import annotations

import collections.abc
import inspect
from typing import Any, get_args, get_origin, get_type_hints

import pydantic
from pydantic.json_schema import models_json_schema

from ._predictor import LoadedPredictor
from ._schema import ID_PATTERN, PredictionRequest, PredictionResponse

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
    }


_STREAMS = {
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
}


def output_schema(predict: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of ``output``, from ``predict``'s return annotation, as Cog writes it, and
    the definitions it refers to (for ``components.schemas``).

    A generator's output is the list of what it yielded (``x-cog-array-type: iterator``).
    Without an annotation, or with one JSON Schema cannot express, any value is allowed.
    """
    try:
        annotation = get_type_hints(predict).get("return", inspect.Signature.empty)
    except Exception:
        annotation = inspect.Signature.empty
    if annotation in (inspect.Signature.empty, Any, None, type(None)):
        return {"title": "Output"}, {}
    streamed = get_origin(annotation) in _STREAMS
    item = (get_args(annotation) or (Any,))[0] if streamed else annotation
    try:
        schema = pydantic.TypeAdapter(item).json_schema(ref_template=_REF)
    except Exception:  # an arbitrary class: the service sends its str()
        schema = {}
    defs = schema.pop("$defs", {})
    if streamed:
        schema = {"type": "array", "items": schema, "x-cog-array-type": "iterator"}
    return {**schema, "title": "Output"}, defs


def openapi_document(predictor: LoadedPredictor, version: str) -> dict[str, Any]:
    _, defs = models_json_schema(
        [
            (predictor.inputs, "validation"),
            (PredictionRequest, "validation"),
            (PredictionResponse, "serialization"),
        ],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = defs.get("$defs", {})
    request = schemas["PredictionRequest"]
    request["properties"]["input"] = {"$ref": _REF.format(model="Input")}
    output, output_defs = output_schema(predictor.predict)
    if output_defs.keys() & schemas.keys():
        output = {"title": "Output"}  # a name clash: say less rather than something wrong
    else:
        schemas.update(output_defs)
    schemas["Output"] = output
    schemas["PredictionResponse"]["properties"]["output"] = {"$ref": _REF.format(model="Output")}
    schemas["Error"] = {
        "type": "object",
        "properties": {"detail": {}},
        "required": ["detail"],
        "title": "Error",
    }
    body = {
        "required": False,
        "content": {
            "application/json": {"schema": {"$ref": _REF.format(model="PredictionRequest")}}
        },
    }
    prediction = {
        "content": {
            "application/json": {"schema": {"$ref": _REF.format(model="PredictionResponse")}}
        }
    }
    errors = {
        "400": _error("Malformed JSON"),
        "409": _error("All prediction slots are in use"),
        "413": _error("Request body too large"),
        "422": _error("Validation error: one entry per offending field"),
        "503": _error("Setup not finished, setup failed, or shutting down"),
    }
    create = {
        "requestBody": body,
        "parameters": [
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "'respond-async' answers 202 at once instead of waiting",
            }
        ],
        "responses": {
            "200": {"description": "The finished prediction", **prediction},
            "202": {"description": "The accepted prediction (respond-async)", **prediction},
            **errors,
        },
    }
    id_param = {
        "name": "prediction_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": ID_PATTERN},
    }
    plain = {"200": {"description": "OK", "content": {"application/json": {"schema": {}}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Prediction service",
            "version": version,
            "description": f"Serving {predictor.name}",
        },
        "paths": {
            "/": {"get": {"summary": "Discovery document", "responses": plain}},
            "/health-check": {"get": {"summary": "Health", "responses": plain}},
            "/predictions": {"post": {"summary": "Create a prediction", **create}},
            "/predictions/{prediction_id}": {
                "put": {
                    "summary": "Create a prediction, idempotently",
                    "parameters": [id_param, *create["parameters"]],
                    **{k: v for k, v in create.items() if k != "parameters"},
                }
            },
            "/predictions/{prediction_id}/cancel": {
                "post": {
                    "summary": "Cancel a prediction",
                    "parameters": [id_param],
                    "responses": {
                        "200": {"description": "The prediction", **prediction},
                        "404": _error("No such prediction"),
                    },
                }
            },
            "/shutdown": {"post": {"summary": "Graceful shutdown", "responses": plain}},
        },
        "components": {"schemas": schemas},
    }
