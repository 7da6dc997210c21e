from __future__ import annotations

import httpx

from service import Config, create_app
from service._demo import DemoPredictor

from .conftest import RecordingTransport, WebhookReceiver, real_server, running_app


async def test_demo_sync_prediction_in_process() -> None:
    async with running_app(DemoPredictor) as (_app, client):
        response = await client.post("/predictions", json={"input": {"prompt": "a b", "delay": 0}})
        assert response.status_code == 200
        body = await response.get_json()
        assert body["status"] == "succeeded"
        assert body["output"] == ["a ", "b"]


async def test_demo_over_real_http_with_webhook(receiver: WebhookReceiver) -> None:
    app = create_app(Config())
    async with real_server(app) as base, httpx.AsyncClient(base_url=base) as http:
        r = await http.post(
            "/predictions",
            json={"input": {"prompt": "x y z", "delay": 0.01}, "webhook": receiver.url},
        )
        assert r.status_code == 200, r.text
        assert r.json()["output"] == ["x ", "y ", "z"]
        await receiver.wait_for(lambda b: bool(b) and b[-1]["status"] == "succeeded")
    assert receiver.bodies[0]["status"] == "starting"


async def test_recording_transport(transport: RecordingTransport) -> None:
    async with running_app(DemoPredictor, transport=transport) as (_app, client):
        r = await client.post(
            "/predictions",
            json={"input": {"prompt": "a", "delay": 0}, "webhook": "http://example.test/h"},
        )
        assert r.status_code == 200
    assert [b["status"] for b in transport.bodies][-1] == "succeeded"
