"""The real thing: Hypercorn's Trio worker on 127.0.0.1, spoken to over HTTP with httpx."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service import Config, PredictorLoadError, create_app

from .conftest import real_server

USER_PREDICTOR = """
import logging
from collections.abc import Iterator

from service import Input

log = logging.getLogger("user-model")


class Shouter:
    def setup(self) -> None:
        self.suffix = "!"

    def predict(
        self,
        text: str = Input(description="What to shout"),
        times: int = Input(default=2, ge=1, le=5),
    ) -> Iterator[str]:
        for i in range(times):
            print(f"shout {i}")
            log.warning("shouted %d", i)
            yield text.upper() + self.suffix
"""


async def test_demo_model_over_real_http() -> None:
    app = create_app(Config())
    async with real_server(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        health = await http.get("/health-check")
        assert health.json()["status"] == "READY"
        r = await http.post("/predictions", json={"input": {"prompt": "one two", "delay": 0}})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert body["status"] == "succeeded"
        assert body["output"] == ["one ", "two"]
        assert body["logs"] == "word 1/2: one\nword 2/2: two\n"


@pytest.fixture
def predictor_file(tmp_path: Path) -> Path:
    path = tmp_path / "predict.py"
    path.write_text(textwrap.dedent(USER_PREDICTOR))
    return path


async def test_user_predictor_file_over_real_http(predictor_file: Path) -> None:
    app = create_app(Config(predictor=f"{predictor_file}:Shouter"))
    async with real_server(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.post("/predictions", json={"input": {"text": "hey", "times": 3}})
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "succeeded"
        assert body["output"] == ["HEY!", "HEY!", "HEY!"]
        assert body["logs"] == "".join(
            f"shout {i}\nWARNING:user-model:shouted {i}\n" for i in range(3)
        )
        schema = (await http.get("/openapi.json")).json()["components"]["schemas"]["Input"]
        assert schema["properties"]["text"]["description"] == "What to shout"
        bad = await http.post("/predictions", json={"input": {"text": "hey", "times": 9}})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "input", "times"]


def test_missing_predictor_name_in_a_file(predictor_file: Path) -> None:
    with pytest.raises(PredictorLoadError, match="has no 'Whisperer'"):
        create_app(Config(predictor=f"{predictor_file}:Whisperer"))


@pytest.fixture
async def demo_base() -> AsyncIterator[str]:
    app = create_app(Config(max_body_bytes=64 * 1024))
    async with real_server(app) as base:
        yield base


async def test_http_details_only_a_real_server_shows(demo_base: str) -> None:
    async with httpx.AsyncClient(base_url=demo_base, timeout=30) as http:
        # A percent-encoded '/' reaches the app decoded: still a bad id, not a missing route.
        r = await http.put("/predictions/a%2Fb", json={})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["path", "prediction_id"]
        # A chunked body (no Content-Length) over the limit.

        async def chunks(n: int = 100) -> AsyncIterator[bytes]:
            for _ in range(n):
                yield b" " * 1024

        r = await http.post("/predictions", content=chunks())
        assert r.status_code == 413
        assert "detail" in r.json()
        # The rest of that body was never read: the server closes the connection, so the
        # next request goes over a fresh one instead of hanging on this one.
        assert r.headers["connection"] == "close"
        # Answers that never needed the body (404, 405, a cancel) must not leave the
        # keep-alive connection stuck either: the next request on it is answered.
        for method, path, status in (
            ("POST", "/nowhere", 404),
            ("GET", "/shutdown", 405),
            ("POST", "/predictions/x/cancel", 404),
            ("GET", "/", 200),
        ):
            r = await http.request(method, path, content=chunks(40))
            assert r.status_code == status
            r = await http.get("/health-check", timeout=10)
            assert r.status_code == 200
        head = await http.head("/health-check")
        assert head.status_code == 200
        assert head.content == b""
        options = await http.options("/predictions")
        assert options.status_code == 200
        assert "content-type" not in options.headers
        assert "POST" in options.headers["allow"]
        # HTTP/1.1 keep-alive: the same connection serves one prediction after another.
        for i in range(5):
            r = await http.post("/predictions", json={"input": {"prompt": f"w{i}", "delay": 0}})
            assert r.status_code == 200
            assert r.json()["output"] == [f"w{i}"]
