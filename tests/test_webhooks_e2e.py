"""Webhooks end to end: the service on real sockets (Hypercorn on 127.0.0.1) posting to a
real receiver on 127.0.0.1, on the real clock. Kept short; the timing promises are tested
exactly on MockClock in ``test_webhooks.py``, these check the same things survive a real
network stack: order, completeness, retries, headers and signatures.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import httpx
import trio
from standardwebhooks.webhooks import Webhook

from service import Config, __version__, create_app
from service._demo import DemoPredictor

from .conftest import WebhookReceiver, real_server

SECRET = "whsec_" + base64.b64encode(b"e2e-secret-e2e-secret-e2e-secret").decode()
TERMINAL = {"succeeded", "failed", "canceled"}


def assert_in_order(bodies: list[dict[str, Any]]) -> None:
    assert bodies[0]["status"] == "starting"
    assert [b["status"] in TERMINAL for b in bodies] == [False] * (len(bodies) - 1) + [True]
    for before, after in pairwise(bodies):
        out_before, out_after = before["output"] or [], after["output"] or []
        assert out_after[: len(out_before)] == out_before
        assert after["logs"].startswith(before["logs"])


async def test_streaming_prediction_webhooks_arrive_in_order_signed(
    receiver: WebhookReceiver,
) -> None:
    app = create_app(Config(webhook_secret=SECRET, webhook_auth_token="tok"))
    words = " ".join(f"w{i}" for i in range(12))
    async with real_server(app) as base, httpx.AsyncClient(base_url=base) as http:
        r = await http.post(
            "/predictions",
            json={"input": {"prompt": words, "delay": 0.05}, "webhook": receiver.url},
        )
        assert r.status_code == 200, r.text
        final = r.json()
        await receiver.wait_for(lambda b: bool(b) and b[-1]["status"] in TERMINAL)
    bodies = receiver.bodies
    assert_in_order(bodies)
    assert bodies[-1]["status"] == "succeeded"
    assert bodies[-1]["output"] == final["output"] and len(final["output"]) == 12
    assert "word 12/12" in bodies[-1]["logs"]
    assert 3 <= len(bodies) <= 2 + math.ceil(final["metrics"]["predict_time"] / 0.5) + 1
    for request in receiver.requests:
        assert Webhook(SECRET).verify(request.body, request.headers) == request.json
        assert request.headers["authorization"] == "Bearer tok"
        assert request.headers["user-agent"] == f"service/{__version__}"
        assert request.headers["content-type"] == "application/json"


class Counter:
    """A sync model: a generator running in a worker thread."""

    def predict(self, n: int = 30) -> Iterator[int]:
        for i in range(n):
            time.sleep(0.02)
            print(f"step {i}")
            yield i


async def test_sync_generator_model_webhooks_in_order(receiver: WebhookReceiver) -> None:
    app = create_app(Config(), predictor=Counter)
    async with real_server(app) as base, httpx.AsyncClient(base_url=base) as http:
        r = await http.post("/predictions", json={"webhook": receiver.url})
        assert r.status_code == 200, r.text
        final = r.json()
        await receiver.wait_for(lambda b: bool(b) and b[-1]["status"] in TERMINAL)
    bodies = receiver.bodies
    assert_in_order(bodies)
    assert bodies[-1]["output"] == list(range(30))
    assert bodies[-1]["logs"].count("step ") == 30
    assert len(bodies) <= 2 + math.ceil(final["metrics"]["predict_time"] / 0.5) + 1


async def test_terminal_request_retried_until_the_receiver_is_back(
    receiver: WebhookReceiver,
) -> None:
    receiver.status = 503
    config = Config(webhook_backoff_initial=0.05, webhook_backoff_max=0.2, webhook_retry_budget=30)
    app = create_app(config, predictor=DemoPredictor)
    async with real_server(app) as base, httpx.AsyncClient(base_url=base) as http:
        r = await http.post(
            "/predictions",
            json={"input": {"prompt": "a b", "delay": 0}, "webhook": receiver.url},
        )
        assert r.status_code == 200 and r.json()["status"] == "succeeded"
        health = (await http.get("/health-check")).json()
        assert health["status"] == "READY"
        await trio.sleep(0.3)  # several attempts are answered 503 meanwhile
        assert receiver.requests == []
        receiver.status = 200
        await receiver.wait_for(lambda b: any(x["status"] == "succeeded" for x in b))
    assert [b["status"] for b in receiver.bodies] == ["succeeded"]
    assert app.webhooks.terminal_failures == 0
