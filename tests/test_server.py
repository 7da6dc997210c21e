"""The real thing: Hypercorn's Trio worker on 127.0.0.1, spoken to over HTTP with httpx."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

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


async def test_an_idle_keep_alive_connection_is_closed_after_its_timeout() -> None:
    """Quart-Trio cancels a request's scope while Hypercorn restarts the connection's idle
    timer; unshielded, the timer never runs, and an idle keep-alive connection is never
    closed: not after keep_alive_timeout, and not at shutdown (which then waits for it)."""
    app = create_app(Config())
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_timeout = 0.3
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        binds = await nursery.start(
            partial(serve, app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        )
        port = int(binds[0].rsplit(":", 1)[1])
        await app.runner.setup_done.wait()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /health-check HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            with trio.fail_after(5):
                while b"READY" not in received:
                    received += await stream.receive_some()
                # Idle from here on: the server must close the connection by itself.
                while chunk := await stream.receive_some():
                    received += chunk
            assert received.startswith(b"HTTP/1.1 200")
        app.request_shutdown()
        await app.drained.wait()
        stop.set()
