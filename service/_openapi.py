"""The OpenAPI 3.1 document, with the request's ``input`` schema taken from ``predict``."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from ._predictor import LoadedPredictor
from ._schema import PredictionRequest, PredictionResponse

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
    }


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
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{1,128}$"},
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
