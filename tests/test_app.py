"""Every endpoint, status code and field of the prediction object, through Quart's test client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pydantic
import pytest
import trio
from werkzeug.datastructures import Headers

from service import Input
from service._openapi import output_schema
from service._schema import PredictionRequest

from .conftest import PREDICTION_FIELDS, RecordingTransport, running_app

ASYNC = {"Prefer": "respond-async"}


async def body_of(response: Any) -> Any:
    assert response.headers["Content-Type"] == "application/json"
    return json.loads(await response.get_data(as_text=False))


class Gate:
    """An async model that runs until the test opens its gate; counts its runs."""

    def __init__(self) -> None:
        self.opened = trio.Event()
        self.started = trio.Event()
        self.runs = 0

    async def predict(self, text: str = "x") -> str:
        self.runs += 1
        print(f"got {text}")
        self.started.set()
        await self.opened.wait()
        return text.upper()

    async def wait_started(self) -> None:
        with trio.fail_after(10):
            await self.started.wait()


def parse_time(value: str) -> datetime:
    assert value.endswith("+00:00"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - parsed) < timedelta(minutes=5)
    return parsed


# -- GET / and /health-check ----------------------------------------------------------------


async def test_index_links_every_endpoint() -> None:
    async with running_app(Gate()) as (_, client):
        r = await client.get("/")
        assert r.status_code == 200
        body = await body_of(r)
    assert body["version"]
    assert body["openapi_url"] == "/openapi.json"
    assert body["healthcheck_url"] == "/health-check"
    assert body["predictions_url"] == "/predictions"
    assert body["predictions_idempotent_url"] == "/predictions/{prediction_id}"
    assert body["predictions_cancel_url"] == "/predictions/{prediction_id}/cancel"
    assert body["shutdown_url"] == "/shutdown"


async def test_health_is_starting_during_a_slow_setup_then_ready() -> None:
    gate = trio.Event()

    class Slow:
        async def setup(self) -> None:
            print("warming up")
            await gate.wait()

        def predict(self) -> str:
            return "ok"

    async with running_app(Slow, wait_ready=False) as (app, client):
        await trio.testing.wait_all_tasks_blocked()
        r = await client.get("/health-check")
        assert r.status_code == 200
        health = await body_of(r)
        assert health["status"] == "STARTING"
        assert health["setup"]["status"] is None
        assert health["setup"]["completed_at"] is None
        parse_time(health["setup"]["started_at"])
        r = await client.post("/predictions", json={})
        assert r.status_code == 503
        assert "setup" in (await body_of(r))["detail"]

        gate.set()
        with trio.fail_after(10):
            await app.runner.setup_done.wait()
        health = await body_of(await client.get("/health-check"))
        assert health["status"] == "READY"
        assert health["setup"]["status"] == "succeeded"
        assert health["setup"]["logs"] == "warming up\n"
        started = parse_time(health["setup"]["started_at"])
        assert parse_time(health["setup"]["completed_at"]) >= started
        r = await client.post("/predictions", json={})
        assert r.status_code == 200


async def test_setup_failed_then_predictions_get_503() -> None:
    class Broken:
        def setup(self) -> None:
            raise RuntimeError("weights not found")

        def predict(self) -> str:
            return "never"

    async with running_app(Broken) as (_, client):
        health = await body_of(await client.get("/health-check"))
        assert health["status"] == "SETUP_FAILED"
        assert health["setup"]["status"] == "failed"
        assert "RuntimeError: weights not found" in health["setup"]["logs"]
        for r in (
            await client.post("/predictions", json={}),
            await client.post("/predictions", json={}, headers=ASYNC),
            await client.put("/predictions/p1", json={}),
        ):
            assert r.status_code == 503
            assert "setup failed" in (await body_of(r))["detail"]


async def test_busy_when_all_slots_are_taken_and_the_next_gets_409() -> None:
    gate = Gate()
    async with running_app(gate, concurrency=2) as (_, client):
        for i in range(2):
            r = await client.put(f"/predictions/p{i}", json={}, headers=ASYNC)
            assert r.status_code == 202
        health = await body_of(await client.get("/health-check"))
        assert health["status"] == "BUSY"
        assert health["concurrency"] == {"max": 2, "current": 2}
        for r in (
            await client.post("/predictions", json={}),
            await client.post("/predictions", json={}, headers=ASYNC),
            await client.put("/predictions/p2", json={}),
        ):
            assert r.status_code == 409
            assert "slot" in (await body_of(r))["detail"]
        # The one holding a slot is still there for an idempotent PUT.
        r = await client.put("/predictions/p0", json={}, headers=ASYNC)
        assert r.status_code == 202

        gate.opened.set()
        for i in range(2):
            r = await client.put(f"/predictions/p{i}", json={})
            assert (await body_of(r))["status"] == "succeeded"
        health = await body_of(await client.get("/health-check"))
        assert health["status"] == "READY"
        assert health["concurrency"] == {"max": 2, "current": 0}
    assert gate.runs == 2


# -- /openapi.json ----------------------------------------------------------------------------


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def all_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_refs(value)


async def test_openapi_is_3_1_with_the_predictors_input_schema() -> None:
    def predict(prompt: str, steps: int = Input(default=4, ge=1, description="Steps")) -> str:
        return prompt

    async with running_app(predict) as (_, client):
        r = await client.get("/openapi.json")
        assert r.status_code == 200
        doc = await body_of(r)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["version"]
    for ref in all_refs(doc):
        resolve(doc, ref)  # every reference leads somewhere
    create = doc["paths"]["/predictions"]["post"]
    request_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = resolve(doc, request_ref)
    input_schema = resolve(doc, request["properties"]["input"]["$ref"])
    assert input_schema["required"] == ["prompt"]
    assert input_schema["properties"]["steps"]["minimum"] == 1
    assert input_schema["properties"]["steps"]["description"] == "Steps"
    assert set(request["properties"]) >= {"id", "input", "webhook", "webhook_events_filter"}
    ok = create["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert set(resolve(doc, ok)["properties"]) == PREDICTION_FIELDS
    assert {"200", "202", "400", "409", "413", "422", "503"} <= set(create["responses"])
    assert set(doc["paths"]) == {
        "/",
        "/health-check",
        "/predictions",
        "/predictions/{prediction_id}",
        "/predictions/{prediction_id}/cancel",
        "/shutdown",
    }


# -- creating predictions ----------------------------------------------------------------------


async def test_sync_post_answers_200_with_the_final_prediction() -> None:
    def predict(text: str) -> str:
        print("working")
        return text[::-1]

    async with running_app(predict) as (_, client):
        r = await client.post("/predictions", json={"input": {"text": "abc"}})
        assert r.status_code == 200
        body = await body_of(r)
    assert set(body) == PREDICTION_FIELDS
    assert len(body["id"]) == 26 and body["id"].isalnum()
    assert body["status"] == "succeeded"
    assert body["input"] == {"text": "abc"}
    assert body["output"] == "cba"
    assert body["logs"] == "working\n"
    assert body["error"] is None
    assert body["webhook"] is None
    assert body["webhook_events_filter"] == ["start", "output", "logs", "completed"]
    created = parse_time(body["created_at"])
    started = parse_time(body["started_at"])
    completed = parse_time(body["completed_at"])
    assert created <= started <= completed
    assert 0 <= body["metrics"]["predict_time"] <= (completed - created).total_seconds() + 1


async def test_async_post_answers_202_then_moves_through_the_statuses() -> None:
    gate = Gate()
    async with running_app(gate) as (_, client):
        r = await client.post(
            "/predictions",
            json={"id": "p1", "input": {"text": "hi"}, "webhook_events_filter": ["completed"]},
            headers=ASYNC,
        )
        assert r.status_code == 202
        accepted = await body_of(r)
        assert set(accepted) == PREDICTION_FIELDS
        assert accepted["status"] == "starting"
        assert accepted["id"] == "p1"
        assert accepted["input"] == {"text": "hi"}
        assert accepted["webhook_events_filter"] == ["completed"]
        assert (accepted["output"], accepted["logs"], accepted["error"]) == (None, "", None)
        assert accepted["metrics"] is None
        assert accepted["started_at"] is None and accepted["completed_at"] is None
        parse_time(accepted["created_at"])

        await gate.wait_started()
        r = await client.put("/predictions/p1", json={"input": {"text": "hi"}}, headers=ASYNC)
        assert r.status_code == 202
        running = await body_of(r)
        assert running["status"] == "processing"
        assert running["logs"] == "got hi\n"
        assert running["metrics"] is None
        assert running["completed_at"] is None
        parse_time(running["started_at"])

        gate.opened.set()
        r = await client.put("/predictions/p1", json={"input": {"text": "hi"}})
        assert r.status_code == 200
        done = await body_of(r)
    assert done["status"] == "succeeded"
    assert done["output"] == "HI"
    assert done["created_at"] == accepted["created_at"]
    assert done["started_at"] == running["started_at"]
    assert parse_time(done["completed_at"]) >= parse_time(done["started_at"])
    assert done["metrics"]["predict_time"] >= 0
    assert gate.runs == 1


@pytest.mark.parametrize(
    "prefer",
    [["respond-async"], ["Respond-Async"], ["wait=5, respond-async; x=1"], ["a", "respond-async"]],
)
async def test_prefer_header_variants(prefer: list[str]) -> None:
    gate = Gate()
    async with running_app(gate) as (_, client):
        headers = [("Prefer", value) for value in prefer]
        r = await client.post("/predictions", json={}, headers=Headers(headers))
        assert r.status_code == 202
        gate.opened.set()


async def test_predict_time_is_the_time_the_model_ran(autojump_clock: trio.abc.Clock) -> None:
    async def predict() -> str:
        await trio.sleep(3)
        return "slept"

    async with running_app(predict) as (_, client):
        body = await body_of(await client.post("/predictions", json={}))
    assert body["metrics"]["predict_time"] == pytest.approx(3, abs=0.1)


def sync_function(n: int) -> int:
    return n * 2


def sync_generator(n: int) -> Iterator[int]:
    for i in range(n):
        print(f"yield {i}")
        yield i


async def async_function(n: int) -> int:
    await trio.sleep(0)
    return n * 2


async def async_generator(n: int) -> AsyncIterator[int]:
    for i in range(n):
        print(f"yield {i}")
        await trio.sleep(0)
        yield i


class WithSetup:
    def setup(self) -> None:
        self.factor = 10

    def predict(self, n: int) -> int:
        return n * self.factor


class AsyncWithSetup:
    async def setup(self) -> None:
        await trio.sleep(0)
        self.factor = 100

    async def predict(self, n: int) -> AsyncIterator[int]:
        yield n * self.factor


@pytest.mark.parametrize(
    ("predictor", "output", "logs"),
    [
        (sync_function, 6, ""),
        (sync_generator, [0, 1, 2], "yield 0\nyield 1\nyield 2\n"),
        (async_function, 6, ""),
        (async_generator, [0, 1, 2], "yield 0\nyield 1\nyield 2\n"),
        (WithSetup, 30, ""),
        (AsyncWithSetup, [300], ""),
    ],
)
async def test_every_shape_of_predictor(predictor: Any, output: Any, logs: str) -> None:
    async with running_app(predictor) as (_, client):
        body = await body_of(await client.post("/predictions", json={"input": {"n": 3}}))
    assert (body["status"], body["output"], body["logs"]) == ("succeeded", output, logs)


async def test_generator_that_yields_nothing_has_an_empty_list() -> None:
    def predict() -> Iterator[str]:
        yield from ()

    async with running_app(predict) as (_, client):
        body = await body_of(await client.post("/predictions", json={}))
    assert (body["status"], body["output"]) == ("succeeded", None)


@pytest.mark.parametrize("is_async", [False, True])
async def test_failed_model(is_async: bool) -> None:
    def sync_predict(n: int) -> int:
        if n == 0:
            raise KeyError  # no message: the error is the exception's name
        raise ValueError(f"cannot handle {n}")

    async def async_predict(n: int) -> int:
        return sync_predict(n)

    async with running_app(async_predict if is_async else sync_predict) as (_, client):
        body = await body_of(await client.post("/predictions", json={"input": {"n": 7}}))
        empty = await body_of(await client.post("/predictions", json={"input": {"n": 0}}))
    assert body["status"] == "failed"
    assert body["error"] == "cannot handle 7"
    assert "ValueError: cannot handle 7" in body["logs"]
    assert body["output"] is None
    assert body["metrics"]["predict_time"] >= 0
    parse_time(body["completed_at"])
    assert (empty["status"], empty["error"]) == ("failed", "KeyError")


async def test_model_output_and_logs_that_json_cannot_hold() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    def predict(kind: str) -> Any:
        print("log \ud800 line")
        return {"nan": float("nan"), "inf": [float("inf")], "obj": Opaque(), "text": "a\udcffb"}[
            kind
        ]

    transport = RecordingTransport()
    async with running_app(predict, transport=transport) as (_, client):
        outputs = []
        for kind in ("nan", "inf", "obj", "text"):
            r = await client.post(
                "/predictions", json={"input": {"kind": kind}, "webhook": "http://hook.test/"}
            )
            assert r.status_code == 200
            body = await body_of(r)
            assert body["logs"] == "log ? line\n"
            outputs.append(body["output"])
        # The service survived all of it, webhooks included.
        assert (await body_of(await client.get("/health-check")))["status"] == "READY"
    assert outputs == [None, [None], "opaque", "a?b"]
    assert [b["output"] for b in transport.bodies if b["status"] == "succeeded"] == outputs


# -- PUT: idempotent -------------------------------------------------------------------------


async def test_put_is_idempotent() -> None:
    gate = Gate()
    async with running_app(gate) as (_, client):
        answers: list[Any] = []

        async def put() -> None:
            r = await client.put("/predictions/same-1", json={"input": {"text": "a"}})
            answers.append((r.status_code, await body_of(r)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(put)
            await gate.wait_started()
            nursery.start_soon(put)
            await trio.testing.wait_all_tasks_blocked()
            assert answers == []  # both wait for the one prediction
            gate.opened.set()
        # Once it is finished, a PUT with the id gets the same prediction back.
        r = await client.put("/predictions/same-1", json={"input": {"text": "a"}}, headers=ASYNC)
        answers.append((r.status_code, await body_of(r)))
    assert gate.runs == 1
    assert [a[0] for a in answers] == [200, 200, 202]
    assert all(a[1] == answers[0][1] for a in answers)
    assert answers[0][1]["status"] == "succeeded"
    assert answers[0][1]["output"] == "A"


async def test_put_with_the_same_id_in_the_body() -> None:
    async with running_app(sync_function) as (_, client):
        r = await client.put("/predictions/abc", json={"id": "abc", "input": {"n": 1}})
        assert r.status_code == 200
        assert (await body_of(r))["id"] == "abc"


async def test_post_with_an_id_is_idempotent_too() -> None:
    gate = Gate()
    gate.opened.set()
    async with running_app(gate) as (_, client):
        first = await body_of(await client.post("/predictions", json={"id": "k"}))
        second = await body_of(await client.post("/predictions", json={"id": "k"}))
    assert first == second
    assert gate.runs == 1


# -- cancel and shutdown ---------------------------------------------------------------------


async def test_cancel_an_async_model() -> None:
    gate = Gate()
    async with running_app(gate) as (_, client):
        waiting: list[Any] = []

        async def wait_sync() -> None:
            r = await client.put("/predictions/c1", json={})
            waiting.append((r.status_code, await body_of(r)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_sync)
            await gate.wait_started()
            r = await client.post("/predictions/c1/cancel")
            assert r.status_code == 200
            assert (await body_of(r))["id"] == "c1"
        [(status, body)] = waiting
        assert status == 200
        assert body["status"] == "canceled"
        assert body["error"] is None
        assert body["logs"] == "got x\n"
        assert body["metrics"]["predict_time"] >= 0
        parse_time(body["completed_at"])
        # The slot is free again; cancelling a finished prediction changes nothing.
        assert (await body_of(await client.get("/health-check")))["status"] == "READY"
        again = await client.post("/predictions/c1/cancel")
        assert again.status_code == 200
        assert await body_of(again) == body
    assert gate.runs == 1


async def test_cancel_before_the_model_started() -> None:
    # Over HTTP the model task always gets going before a cancel request arrives, so this
    # drives the runner directly: created and cancelled with no checkpoint in between.
    gate = Gate()
    async with running_app(gate) as (app, client):
        p = app.runner.create(PredictionRequest(id="early"), {})
        assert app.runner.cancel("early") is p
        final = await body_of(await client.put("/predictions/early", json={}))
    assert final["status"] == "canceled"
    assert final["started_at"] is None
    assert final["metrics"] == {"predict_time": 0.0}
    assert gate.runs == 0


async def test_cancel_a_finished_prediction_changes_nothing() -> None:
    async with running_app(sync_function) as (_, client):
        done = await body_of(await client.post("/predictions", json={"input": {"n": 2}}))
        r = await client.post(f"/predictions/{done['id']}/cancel")
        assert r.status_code == 200
        assert await body_of(r) == done


async def test_cancel_an_unknown_id_is_404() -> None:
    async with running_app(sync_function) as (_, client):
        r = await client.post("/predictions/nope/cancel")
        assert r.status_code == 404
        assert "nope" in (await body_of(r))["detail"]


async def test_shutdown_then_503() -> None:
    async with running_app(sync_function) as (app, client):
        r = await client.post("/shutdown")
        assert r.status_code == 200
        assert isinstance((await body_of(r))["detail"], str)
        r = await client.post("/predictions", json={"input": {"n": 1}})
        assert r.status_code == 503
        assert "shutting down" in (await body_of(r))["detail"]
        assert (await body_of(await client.get("/health-check")))["status"] == "DEFUNCT"
        with trio.fail_after(10):
            await app.drained.wait()


async def test_shutdown_cancels_a_running_prediction() -> None:
    gate = Gate()
    async with running_app(gate) as (app, client):
        waiting: list[Any] = []

        async def wait_sync() -> None:
            waiting.append(await body_of(await client.put("/predictions/s1", json={})))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_sync)
            await gate.wait_started()
            assert (await client.post("/shutdown")).status_code == 200
        with trio.fail_after(10):
            await app.drained.wait()
    assert waiting[0]["status"] == "canceled"


# -- errors: always JSON {"detail": ...}, never a 5xx for a client's mistake -----------------


def _input_detail(detail: Any) -> bool:
    return isinstance(detail, list) and all({"loc", "msg", "type"} <= set(e) for e in detail)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "where"),
    [
        ("POST", "/predictions", {"data": b'{"input": '}, 400, "not valid JSON"),
        ("POST", "/predictions", {"data": b'{"input": {"n": \xff}}'}, 400, "not valid JSON"),
        ("POST", "/predictions", {"data": b'{"input": {"n": NaN}}'}, 400, "not valid JSON"),
        ("POST", "/predictions", {"data": b"[" * 3000}, 400, "not valid JSON"),
        ("POST", "/predictions", {"data": b'{"id": "\\ud800"}'}, 400, "not valid JSON"),
        ("POST", "/predictions", {"data": b"x" * 5000}, 413, ""),
        ("POST", "/predictions", {"json": [1, 2]}, 422, "body"),
        ("POST", "/predictions", {"json": {"input": [1]}}, 422, "body.input"),
        ("POST", "/predictions", {"json": {"input": "n=1"}}, 422, "body.input"),
        ("POST", "/predictions", {"json": {"input": {"n": "x"}}}, 422, "body.input.n"),
        ("POST", "/predictions", {"json": {"input": {"n": 1, "m": 2}}}, 422, "body.input.m"),
        ("POST", "/predictions", {"json": {"input": {}}}, 422, "body.input.n"),
        ("POST", "/predictions", {"json": {"id": "a/b"}}, 422, "body.id"),
        ("POST", "/predictions", {"json": {"id": "a" * 129}}, 422, "body.id"),
        ("POST", "/predictions", {"json": {"id": ""}}, 422, "body.id"),
        ("POST", "/predictions", {"json": {"id": 5}}, 422, "body.id"),
        ("PUT", "/predictions/" + "a" * 200, {"json": {}}, 422, "path.prediction_id"),
        ("PUT", "/predictions/a%2Fb", {"json": {}}, 422, "path.prediction_id"),
        ("PUT", "/predictions/a/b", {"json": {}}, 422, "path.prediction_id"),
        ("PUT", "/predictions/a%20b", {"json": {}}, 422, "path.prediction_id"),
        ("PUT", "/predictions/p1", {"json": {"id": "p2"}}, 422, "body.id"),
        ("POST", "/predictions", {"json": {"webhook": "ftp://h/x"}}, 422, "body.webhook"),
        ("POST", "/predictions", {"json": {"webhook": "not a url"}}, 422, "body.webhook"),
        ("POST", "/predictions", {"json": {"webhook": "http://u:p@h/"}}, 422, "body.webhook"),
        (
            "POST",
            "/predictions",
            {"json": {"webhook_events_filter": ["start", "bogus"]}},
            422,
            "body.webhook_events_filter.1",
        ),
        ("GET", "/nowhere", {}, 404, ""),
        ("POST", "/predictions/x/y/cancel", {}, 404, ""),
        ("GET", "/predictions", {}, 405, ""),
        ("DELETE", "/predictions/p1", {}, 405, ""),
        ("GET", "/predictions/p1/cancel", {}, 405, ""),
        ("POST", "/health-check", {}, 405, ""),
        ("GET", "/shutdown", {}, 405, ""),
    ],
)
async def test_client_errors_are_json(
    method: str, path: str, kwargs: dict[str, Any], status: int, where: str
) -> None:
    async with running_app(sync_function, max_body_bytes=4096) as (_, client):
        r = await client.open(path, method=method, **kwargs)
        assert r.status_code == status
        body = await body_of(r)
        assert set(body) == {"detail"}
        if status == 422:
            assert _input_detail(body["detail"])
            assert where in {".".join(map(str, e["loc"])) for e in body["detail"]}
        else:
            assert isinstance(body["detail"], str) and body["detail"]
            assert where in body["detail"]
        # and the service is fine afterwards
        ok = await client.post("/predictions", json={"input": {"n": 1}})
        assert ok.status_code == 200


async def test_every_bad_field_is_reported_at_once() -> None:
    async with running_app(sync_function) as (_, client):
        r = await client.put(
            "/predictions/p1",
            json={
                "id": "p2",
                "input": {"n": "x", "extra": 1},
                "webhook": "ftp://h/",
                "webhook_events_filter": ["nope"],
            },
        )
        assert r.status_code == 422
        locs = sorted(".".join(map(str, e["loc"])) for e in (await body_of(r))["detail"])
    assert locs == [
        "body.id",
        "body.input.extra",
        "body.input.n",
        "body.webhook",
        "body.webhook_events_filter.0",
    ]


async def test_lenient_about_content_type_and_empty_bodies() -> None:
    # curl -d sends application/x-www-form-urlencoded; an empty body means no input.
    async with running_app(WithSetup) as (_, client):
        r = await client.post(
            "/predictions",
            data=b'{"input": {"n": 2}}',
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert (await body_of(r))["output"] == 20
    async with running_app(Gate) as (_, client):
        r = await client.post("/predictions", data=b"", headers=ASYNC)
        assert r.status_code == 202
        assert (await body_of(r))["input"] == {}


async def test_unknown_top_level_keys_are_ignored_as_cog_does() -> None:
    async with running_app(sync_function) as (_, client):
        r = await client.post(
            "/predictions", json={"input": {"n": 1}, "output_file_prefix": "s3://x/"}
        )
        assert r.status_code == 200


async def test_head_and_options() -> None:
    async with running_app(sync_function) as (_, client):
        head = await client.head("/health-check")
        assert head.status_code == 200
        options = await client.options("/predictions")
        assert options.status_code == 200
        assert set(options.headers["Allow"].replace(" ", "").split(",")) == {"POST", "OPTIONS"}
        assert await options.get_data() == b""


# -- concurrency -----------------------------------------------------------------------------


async def test_sequential_sync_requests_never_see_409() -> None:
    async with running_app(sync_function) as (_, client):
        for i in range(50):
            r = await client.post("/predictions", json={"input": {"n": i}})
            assert r.status_code == 200, i
            assert (await body_of(r))["output"] == 2 * i


async def test_slot_is_free_even_while_the_terminal_webhook_is_still_sent(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def slow_receiver(request: Any, n: int) -> httpx.Response:
        await trio.sleep(2)
        return httpx.Response(200)

    transport = RecordingTransport(responder=slow_receiver)
    async with running_app(async_function, transport=transport) as (_, client):
        for i in range(20):
            r = await client.post(
                "/predictions", json={"input": {"n": i}, "webhook": "http://hook.test/"}
            )
            assert r.status_code == 200, i
    last = {b["id"]: b["status"] for b in transport.bodies}  # each id's last request
    assert list(last.values()) == ["succeeded"] * 20


# -- /openapi.json: the output schema ----------------------------------------------------------


class Point(pydantic.BaseModel):
    x: float
    y: float


class Shape(pydantic.BaseModel):
    points: list[Point]


def returns_shape() -> Shape:
    return Shape(points=[])


def returns_text(n: int) -> str | None:
    return str(n)


def says_nothing(n):  # type: ignore[no-untyped-def]
    return n


@pytest.mark.parametrize(
    ("predictor", "expected"),
    [
        (sync_generator, {"type": "array", "items": {"type": "integer"}}),
        (async_generator, {"type": "array", "items": {"type": "integer"}}),
        (returns_text, {"anyOf": [{"type": "string"}, {"type": "null"}]}),
        (WithSetup, {"type": "integer"}),
    ],
)
async def test_openapi_output_schema_follows_the_return_annotation(
    predictor: Any, expected: dict[str, Any]
) -> None:
    async with running_app(predictor) as (_, client):
        doc = await body_of(await client.get("/openapi.json"))
    schemas = doc["components"]["schemas"]
    output_ref = schemas["PredictionResponse"]["properties"]["output"]
    assert output_ref == {"$ref": "#/components/schemas/Output"}
    output = schemas["Output"]
    assert output["title"] == "Output"
    assert {k: output.get(k) for k in expected} == expected
    assert output.get("x-cog-array-type") == ("iterator" if "items" in expected else None)


async def test_openapi_output_schema_of_a_model_with_nested_definitions() -> None:
    async with running_app(returns_shape) as (_, client):
        doc = await body_of(await client.get("/openapi.json"))
    for ref in all_refs(doc):
        resolve(doc, ref)
    output = doc["components"]["schemas"]["Output"]
    assert output["type"] == "object"
    point = resolve(doc, output["properties"]["points"]["items"]["$ref"])
    assert set(point["properties"]) == {"x", "y"}


def test_no_return_annotation_allows_any_output() -> None:
    assert output_schema(says_nothing) == ({"title": "Output"}, {})
