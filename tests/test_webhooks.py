"""Webhook timing, ordering, filters, retries and signing, on trio's MockClock.

Every test here runs with ``autojump_clock``: the webhook client talks to a
:class:`RecordingTransport` (no sockets), whose ``responder`` plays the receiver: fast,
slow, failing or down. Times asserted are trio's virtual clock, so "within 500 ms" is exact
and nothing flakes. The end-to-end tests on real sockets are in ``test_webhooks_e2e.py``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest
import trio
from standardwebhooks.webhooks import Webhook

from service import __version__

from .conftest import RecordingTransport, WebhookRequest, running_app

HOOK = "http://receiver.test/hook"
TERMINAL = {"succeeded", "failed", "canceled"}
STATUS_ORDER = {"starting": 0, "processing": 1, "succeeded": 2, "failed": 2, "canceled": 2}
EPS = 1e-6
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


# -- helpers -------------------------------------------------------------------------


async def predict(client: Any, body: dict[str, Any], *, wait: bool = True) -> dict[str, Any]:
    headers = {} if wait else {"Prefer": "respond-async"}
    response = await client.post("/predictions", json=body, headers=headers)
    assert response.status_code == (200 if wait else 202), await response.get_data()
    result: dict[str, Any] = await response.get_json()
    return result


async def settle(app: Any) -> None:
    """Wait (virtual time) until every webhook task is done."""
    with trio.fail_after(3600):
        await app.webhooks.wait_idle()


def outputs(body: dict[str, Any]) -> list[Any]:
    return body["output"] or []


def assert_ordered(bodies: list[dict[str, Any]]) -> None:
    """No body is older than the one before it: status, output and logs only grow."""
    for before, after in pairwise(bodies):
        assert STATUS_ORDER[before["status"]] <= STATUS_ORDER[after["status"]]
        out_before, out_after = outputs(before), outputs(after)
        assert out_after[: len(out_before)] == out_before, "output went backwards"
        assert after["logs"].startswith(before["logs"]), "logs went backwards"


def assert_one_terminal_last(bodies: list[dict[str, Any]]) -> None:
    assert [b["status"] in TERMINAL for b in bodies] == [False] * (len(bodies) - 1) + [True]


def first_carrying(
    requests: list[WebhookRequest], has: Callable[[dict[str, Any]], bool]
) -> WebhookRequest:
    return next(r for r in requests if has(r.json))


# -- the throttle ----------------------------------------------------------------------


async def test_thousand_outputs_in_two_seconds(autojump_clock: Any) -> None:
    produced: list[float] = []

    async def stream(n: int = 1000) -> AsyncIterator[int]:
        for i in range(n):
            await trio.sleep(2 / n)
            produced.append(trio.current_time())
            yield i

    transport = RecordingTransport()
    async with running_app(stream, transport=transport) as (app, client):
        result = await predict(client, {"webhook": HOOK})
        await settle(app)
    assert result["status"] == "succeeded"
    bodies, requests = transport.bodies, transport.requests

    assert len(bodies) <= 2 + math.ceil(2 / 0.5) + 1
    assert bodies[0]["status"] == "starting" and bodies[0]["output"] is None
    assert_one_terminal_last(bodies)
    assert bodies[-1]["status"] == "succeeded"
    assert bodies[-1]["output"] == list(range(1000))
    assert_ordered(bodies)
    # start and the output requests (the terminal one is exempt) are >= 500 ms apart
    for a, b in pairwise(requests[:-1]):
        assert b.at - a.at >= 0.5 - EPS
    # trailing edge: every single output reached the receiver within 500 ms of being made
    for i, made_at in enumerate(produced):
        carrier = first_carrying(requests, lambda b, i=i: len(outputs(b)) > i)
        assert carrier.at - made_at <= 0.5 + EPS, f"output {i} waited {carrier.at - made_at}"
    assert transport.max_in_flight == 1


@pytest.mark.parametrize("kind", ["output", "logs"])
@pytest.mark.parametrize("lead", [0.1, 0.8], ids=["inside-start-window", "after-window"])
async def test_one_change_then_silence_is_sent_within_500ms(
    autojump_clock: Any, kind: str, lead: float
) -> None:
    """The case Cog gets wrong: a lone change must not wait for a later one."""
    made: list[float] = []

    async def quiet(x: int = 0) -> AsyncIterator[str]:
        await trio.sleep(lead)
        made.append(trio.current_time())
        if kind == "output":
            yield "first"
        else:
            print("first line")
        await trio.sleep(3)
        yield "last"

    transport = RecordingTransport()
    async with running_app(quiet, transport=transport) as (app, client):
        await predict(client, {"webhook": HOOK})
        await settle(app)

    def has(b: dict[str, Any]) -> bool:
        return "first" in outputs(b) if kind == "output" else "first line" in b["logs"]

    carrier = first_carrying(transport.requests, has)
    assert carrier.json["status"] == "processing", "the change waited for the end"
    assert carrier.at - made[0] <= 0.5 + EPS
    if lead > 0.5:  # the window since `start` had passed: no reason to wait at all
        assert carrier.at - made[0] <= EPS
    assert_ordered(transport.bodies)


async def test_completed_supersedes_a_pending_throttled_update(autojump_clock: Any) -> None:
    async def brief(x: int = 0) -> AsyncIterator[str]:
        await trio.sleep(0.1)
        yield "a"  # inside start's window: held for the trailing edge at 0.5...
        await trio.sleep(0.2)  # ...but the model is done at 0.3

    transport = RecordingTransport()
    async with running_app(brief, transport=transport) as (app, client):
        t0 = trio.current_time()
        await predict(client, {"webhook": HOOK})
        await settle(app)
    assert [b["status"] for b in transport.bodies] == ["starting", "succeeded"]
    assert transport.bodies[-1]["output"] == ["a"]
    assert transport.requests[-1].at - t0 == pytest.approx(0.3, abs=0.01)


async def steps(x: int = 0) -> AsyncIterator[str]:
    """Output a, b; then only a log line; then output c. One second apart."""
    yield "a"
    await trio.sleep(1)
    yield "b"
    await trio.sleep(1)
    print("note")
    await trio.sleep(1)
    yield "c"
    await trio.sleep(1)


async def run_steps(events: list[str]) -> RecordingTransport:
    transport = RecordingTransport()
    async with running_app(steps, transport=transport) as (app, client):
        t0 = trio.current_time()
        result = await predict(client, {"webhook": HOOK, "webhook_events_filter": events})
        assert result["status"] == "succeeded"
        await settle(app)
    for r in transport.requests:
        r.at -= t0
    return transport


async def test_filter_start_completed(autojump_clock: Any) -> None:
    transport = await run_steps(["start", "completed"])
    assert [b["status"] for b in transport.bodies] == ["starting", "succeeded"]
    assert transport.bodies[-1]["output"] == ["a", "b", "c"]
    assert transport.bodies[-1]["logs"] == "note\n"


async def test_filter_completed_only(autojump_clock: Any) -> None:
    transport = await run_steps(["completed"])
    assert [b["status"] for b in transport.bodies] == ["succeeded"]
    assert transport.bodies[0]["output"] == ["a", "b", "c"]


async def test_filter_logs_only(autojump_clock: Any) -> None:
    """Output changes alone send nothing; the logs request carries the latest output."""
    transport = await run_steps(["logs"])
    [only] = transport.requests
    assert only.json["status"] == "processing"
    assert only.json["logs"] == "note\n"
    assert only.json["output"] == ["a", "b"]
    assert only.json["webhook_events_filter"] == ["logs"]
    assert 2 - EPS <= only.at <= 2 + EPS  # when the line was printed, not later


async def test_filter_output_only(autojump_clock: Any) -> None:
    transport = await run_steps(["output"])
    assert [b["output"] for b in transport.bodies] == [["a"], ["a", "b"], ["a", "b", "c"]]
    assert [b["status"] for b in transport.bodies] == ["processing"] * 3
    assert transport.bodies[-1]["logs"] == "note\n"  # logs ride along, cause nothing


# -- slow, hanging and absent receivers --------------------------------------------------


def slow(seconds: float, log: list[tuple[float, float, str]] | None = None) -> Any:
    async def responder(request: WebhookRequest, n: int) -> httpx.Response:
        await trio.sleep(seconds)
        if log is not None:
            log.append((request.at, trio.current_time(), request.json["status"]))
        return httpx.Response(200)

    return responder


async def ticker(n: int = 40, every: float = 0.1) -> AsyncIterator[int]:
    for i in range(n):
        await trio.sleep(every)
        yield i


async def test_slow_receiver_never_slows_the_model_and_updates_coalesce(
    autojump_clock: Any,
) -> None:
    times: dict[str, float] = {}
    for name, responder in [("fast", None), ("slow", slow(3.0))]:
        transport = RecordingTransport(responder=responder)
        async with running_app(ticker, transport=transport) as (app, client):
            t0 = trio.current_time()
            result = await predict(client, {"webhook": HOOK})
            answered = trio.current_time()
            await settle(app)
        times[name] = result["metrics"]["predict_time"]
        assert answered - t0 < 4.0 + 0.1, "the sync response waited for webhooks"
        bodies = transport.bodies
        assert_ordered(bodies)
        assert_one_terminal_last(bodies)
        assert bodies[-1]["output"] == list(range(40))
        assert transport.max_in_flight == 1
    assert times["slow"] == pytest.approx(times["fast"], abs=EPS)
    # 4 s of output against 3 s per request: start, at most ceil(4/3) updates, completed
    assert len(bodies) <= 1 + math.ceil(4 / 3) + 1


async def test_connection_cap_holds_across_predictions_and_every_terminal_arrives(
    autojump_clock: Any,
) -> None:
    """``webhook_max_connections`` bounds the requests in flight over all predictions;
    the rest wait their turn (in order), and no prediction's terminal request is lost."""
    transport = RecordingTransport(responder=slow(0.2))
    async with running_app(
        ticker, transport=transport, concurrency=12, webhook_max_connections=3
    ) as (app, client):
        async with trio.open_nursery() as nursery:
            for i in range(12):
                body = {"id": f"p{i}", "input": {"n": 5}, "webhook": HOOK}
                nursery.start_soon(predict, client, body)
        await settle(app)
    assert transport.max_in_flight == 3
    by_id: dict[str, list[dict[str, Any]]] = {}
    for body in transport.bodies:
        by_id.setdefault(body["id"], []).append(body)
    assert sorted(by_id) == sorted(f"p{i}" for i in range(12))
    for bodies in by_id.values():
        assert bodies[0]["status"] == "starting"
        assert_ordered(bodies)
        assert_one_terminal_last(bodies)
        assert bodies[-1]["output"] == list(range(5))


async def test_requests_one_at_a_time_and_completed_waits_for_one_on_the_wire(
    autojump_clock: Any,
) -> None:
    log: list[tuple[float, float, str]] = []
    transport = RecordingTransport(responder=slow(2.5, log))
    async with running_app(ticker, transport=transport) as (app, client):
        await predict(client, {"webhook": HOOK})
        await settle(app)
    assert len(log) >= 3
    for (_, end, _), (start, _, _) in pairwise(log):
        assert start >= end - EPS, "a request started before the previous one ended"
    assert log[-1][2] == "succeeded"
    assert transport.max_in_flight == 1


class TracingTransport(RecordingTransport):
    """Reports progress through httpx's ``trace`` extension as httpcore does, and hangs
    the first output/logs request for ``hang`` seconds: while connecting (the receiver
    never saw it) or after the headers went out (the receiver is handling it)."""

    def __init__(self, hang: float, phase: str) -> None:
        super().__init__()
        self.hang, self.phase, self.hung = hang, phase, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        trace = request.extensions.get("trace")
        body = json.loads(request.content)
        hang = not self.hung and body["status"] == "processing"
        self.hung |= hang
        if trace is not None:
            await trace("connection.connect_tcp.started", {})
        if hang and self.phase == "connect":
            await trio.sleep(self.hang)
        if trace is not None:
            await trace("connection.connect_tcp.complete", {})
            await trace("http11.send_request_headers.started", {})
        if hang and self.phase == "sent":
            self.in_flight += 1  # the receiver has it: count it as in flight
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await trio.sleep(self.hang)
            finally:
                self.in_flight -= 1
        return await super().handle_async_request(request)


async def late_output(x: int = 0) -> AsyncIterator[str]:
    await trio.sleep(0.7)
    yield "a"
    await trio.sleep(0.3)


async def test_completed_does_not_wait_for_an_update_still_connecting(
    autojump_clock: Any,
) -> None:
    transport = TracingTransport(hang=10.0, phase="connect")
    async with running_app(late_output, transport=transport, webhook_timeout=10.0) as (app, c):
        t0 = trio.current_time()
        await predict(c, {"webhook": HOOK})
        await settle(app)
    assert [b["status"] for b in transport.bodies] == ["starting", "succeeded"]
    assert transport.requests[-1].at - t0 == pytest.approx(1.0, abs=0.01)
    assert transport.bodies[-1]["output"] == ["a"]


async def test_completed_waits_for_an_update_the_receiver_already_has(
    autojump_clock: Any,
) -> None:
    transport = TracingTransport(hang=4.0, phase="sent")
    async with running_app(late_output, transport=transport, webhook_timeout=10.0) as (app, c):
        t0 = trio.current_time()
        await predict(c, {"webhook": HOOK})
        await settle(app)
    assert [b["status"] for b in transport.bodies] == ["starting", "processing", "succeeded"]
    assert transport.requests[-1].at - t0 >= 0.7 + 4.0 - EPS
    assert transport.max_in_flight == 1


async def test_hanging_receiver_bounded_by_the_attempt_deadline(autojump_clock: Any) -> None:
    attempts: list[WebhookRequest] = []

    async def hang(request: WebhookRequest, n: int) -> httpx.Response:
        attempts.append(request)
        await trio.sleep_forever()
        raise AssertionError

    transport = RecordingTransport(responder=hang)
    settings = {"webhook_timeout": 1.0, "webhook_retry_budget": 20.0}
    async with running_app(ticker, transport=transport, **settings) as (app, client):
        t0 = trio.current_time()
        result = await predict(client, {"webhook": HOOK})
        assert result["status"] == "succeeded"
        await settle(app)
        assert trio.current_time() - t0 <= 4.0 + 3.0 + 20.0 + EPS
    assert app.webhooks.terminal_failures == 1
    terminal = [r for r in attempts if r.json["status"] == "succeeded"]
    assert len(terminal) >= 2  # a timeout is retried
    assert transport.max_in_flight == 1


async def test_receiver_down_prediction_succeeds_service_stays_ready(
    autojump_clock: Any,
) -> None:
    attempts: list[WebhookRequest] = []

    async def down(request: WebhookRequest, n: int) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("connection refused")

    transport = RecordingTransport(responder=down)
    async with running_app(ticker, transport=transport, webhook_retry_budget=30.0) as (app, c):
        result = await predict(c, {"webhook": HOOK})
        assert result["status"] == "succeeded" and result["output"] == list(range(40))
        health = await (await c.get("/health-check")).get_json()
        assert health["status"] == "READY"
        again = await predict(c, {"input": {"n": 2}})  # no webhook: not held up either
        assert again["status"] == "succeeded"
        await settle(app)
        health = await (await c.get("/health-check")).get_json()
        assert health["status"] == "READY"
    assert app.webhooks.terminal_failures == 1
    terminal = [r for r in attempts if r.json["status"] == "succeeded"]
    assert len(terminal) >= 5  # retried...
    assert terminal[-1].at - terminal[0].at <= 30.0 + EPS  # ...within the budget
    assert transport.requests == []


# -- terminal retries ----------------------------------------------------------------------


def failing_terminal(
    answers: list[httpx.Response], attempts: list[WebhookRequest]
) -> Callable[[WebhookRequest, int], Awaitable[httpx.Response]]:
    """Answer the terminal request with ``answers`` in turn, then 200."""
    remaining = list(answers)

    async def responder(request: WebhookRequest, n: int) -> httpx.Response:
        if request.json["status"] not in TERMINAL:
            return httpx.Response(200)
        attempts.append(request)
        return remaining.pop(0) if remaining else httpx.Response(200)

    return responder


async def short(x: int = 0) -> str:
    await trio.sleep(0.1)
    return "done"


async def test_terminal_retried_with_growing_backoff_same_id_fresh_signature(
    autojump_clock: Any,
) -> None:
    attempts: list[WebhookRequest] = []
    transport = RecordingTransport(responder=failing_terminal([httpx.Response(500)] * 3, attempts))
    async with running_app(short, transport=transport, webhook_secret=SECRET) as (app, client):
        # webhook-timestamp follows the virtual clock, so retries seconds apart differ
        offset = datetime.now(UTC).timestamp() - trio.current_time()
        app.webhooks.wall_clock = lambda: offset + trio.current_time()
        await predict(client, {"webhook": HOOK})
        await settle(app)
    assert len(attempts) == 4
    assert transport.requests[-1] is attempts[-1]  # delivered once accepted
    assert [b["status"] for b in transport.bodies] == ["starting", "succeeded"]
    gaps = [b.at - a.at for a, b in pairwise(attempts)]
    assert gaps[0] > 0 and gaps[0] < gaps[1] < gaps[2], gaps
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert len({a.body for a in attempts}) == 1
    for a in attempts:
        assert int(a.headers["webhook-timestamp"]) == int(offset + a.at)
        Webhook(SECRET).verify(a.body, a.headers)
    assert len({a.headers["webhook-signature"] for a in attempts}) > 1
    assert app.webhooks.terminal_failures == 0


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_answers(autojump_clock: Any, status: int) -> None:
    attempts: list[WebhookRequest] = []
    transport = RecordingTransport(responder=failing_terminal([httpx.Response(status)], attempts))
    async with running_app(short, transport=transport) as (app, client):
        await predict(client, {"webhook": HOOK})
        await settle(app)
    assert len(attempts) == 2
    assert transport.bodies[-1]["status"] == "succeeded"


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(400),
        httpx.Response(401),
        httpx.Response(404),
        httpx.Response(410),
        httpx.Response(422),
        httpx.Response(307, headers={"location": "http://elsewhere.test/"}),
    ],
    ids=lambda r: str(r.status_code),
)
async def test_final_answers_are_not_retried(autojump_clock: Any, answer: httpx.Response) -> None:
    attempts: list[WebhookRequest] = []
    transport = RecordingTransport(responder=failing_terminal([answer], attempts))
    async with running_app(short, transport=transport) as (app, client):
        result = await predict(client, {"webhook": HOOK})
        await settle(app)
    assert result["status"] == "succeeded"
    assert len(attempts) == 1
    assert transport.attempts == 2  # start + that one terminal attempt: no redirect followed
    assert app.webhooks.terminal_failures == 1


async def test_retry_after_seconds_is_honoured(autojump_clock: Any) -> None:
    attempts: list[WebhookRequest] = []
    answers = [httpx.Response(429, headers={"retry-after": "7"})]
    transport = RecordingTransport(responder=failing_terminal(answers, attempts))
    async with running_app(short, transport=transport) as (app, client):
        await predict(client, {"webhook": HOOK})
        await settle(app)
    assert len(attempts) == 2
    assert 7.0 - EPS <= attempts[1].at - attempts[0].at <= 7.0 + EPS


async def test_retry_after_http_date_is_honoured(autojump_clock: Any) -> None:
    attempts: list[WebhookRequest] = []
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    answers = [httpx.Response(503, headers={"retry-after": when})]
    transport = RecordingTransport(responder=failing_terminal(answers, attempts))
    async with running_app(short, transport=transport) as (app, client):
        await predict(client, {"webhook": HOOK})
        await settle(app)
    assert len(attempts) == 2
    assert 8.5 <= attempts[1].at - attempts[0].at <= 10.0 + EPS  # the date has 1 s resolution


async def test_retry_after_past_the_budget_gives_up(autojump_clock: Any) -> None:
    attempts: list[WebhookRequest] = []
    answers = [httpx.Response(503, headers={"retry-after": "600"})]
    transport = RecordingTransport(responder=failing_terminal(answers, attempts))
    async with running_app(short, transport=transport, webhook_retry_budget=60.0) as (app, c):
        await predict(c, {"webhook": HOOK})
        await settle(app)
    assert len(attempts) == 1
    assert app.webhooks.terminal_failures == 1


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_mid_stream_sends_exactly_one_canceled(autojump_clock: Any) -> None:
    async def endless(x: int = 0) -> AsyncIterator[int]:
        for i in range(10_000):
            yield i
            await trio.sleep(0.1)

    transport = RecordingTransport()
    async with running_app(endless, transport=transport) as (app, client):
        created = await predict(client, {"webhook": HOOK}, wait=False)
        await trio.sleep(1.23)
        response = await client.post(f"/predictions/{created['id']}/cancel")
        assert response.status_code == 200
        p = app.runner.get(created["id"])
        assert p is not None
        await p.done.wait()
        await settle(app)
    bodies = transport.bodies
    assert_one_terminal_last(bodies)
    assert bodies[-1]["status"] == "canceled"
    assert bodies[-1]["output"] == p.output and len(p.output) >= 12
    assert_ordered(bodies)


# -- headers and signing -----------------------------------------------------------------


async def test_headers_signed_and_authorized(autojump_clock: Any) -> None:
    transport = RecordingTransport()
    settings = {"webhook_secret": SECRET, "webhook_auth_token": "s3cret-token"}
    async with running_app(ticker, transport=transport, **settings) as (app, client):
        await predict(client, {"webhook": HOOK, "input": {"n": 10}})
        await settle(app)
    assert len(transport.requests) >= 3
    for r in transport.requests:
        assert r.headers["content-type"] == "application/json"
        assert r.headers["user-agent"] == f"service/{__version__}"
        assert r.headers["authorization"] == "Bearer s3cret-token"
        assert Webhook(SECRET).verify(r.body, r.headers) == r.json
    assert len({r.headers["webhook-id"] for r in transport.requests}) == len(transport.requests)
    # a signature made with another key, or over another body, does not verify
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    r = transport.requests[0]
    with pytest.raises(Exception, match="signature"):
        Webhook(other).verify(r.body, r.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(r.body.replace(b"starting", b"STARTING"), r.headers)


async def test_no_auth_or_signature_headers_unless_configured(autojump_clock: Any) -> None:
    transport = RecordingTransport()
    async with running_app(short, transport=transport) as (app, client):
        await predict(client, {"webhook": HOOK})
        await settle(app)
    for r in transport.requests:
        assert "authorization" not in r.headers
        assert not any(k.startswith("webhook-") for k in r.headers)
        assert r.headers["user-agent"] == f"service/{__version__}"


# -- randomized scenarios: the invariants hold whatever the timing -------------------------


@pytest.mark.parametrize("seed", range(12))
async def test_random_scenarios_keep_every_promise(autojump_clock: Any, seed: int) -> None:
    rng = random.Random(seed)
    script = [(rng.choice(["out", "log"]), rng.uniform(0, 0.7)) for _ in range(rng.randint(1, 25))]
    latency = rng.choice([0.0, 0.2, 0.9, 1.6])
    made: list[tuple[str, int, float]] = []  # (kind, count so far, time)

    async def scripted(x: int = 0) -> AsyncIterator[int]:
        n_out = n_log = 0
        for kind, gap in script:
            await trio.sleep(gap)
            if kind == "out":
                n_out += 1
                made.append(("out", n_out, trio.current_time()))
                yield n_out
            else:
                n_log += 1
                made.append(("log", n_log, trio.current_time()))
                print(f"line {n_log}")

    async def responder(request: WebhookRequest, n: int) -> httpx.Response:
        await trio.sleep(rng.uniform(0, latency))
        return httpx.Response(200)

    transport = RecordingTransport(responder=responder)
    async with running_app(scripted, transport=transport) as (app, client):
        await predict(client, {"webhook": HOOK})
        finished = trio.current_time()
        await settle(app)
    requests, bodies = transport.requests, transport.bodies
    assert bodies[0]["status"] == "starting"
    assert_one_terminal_last(bodies)
    assert_ordered(bodies)
    assert transport.max_in_flight == 1
    for a, b in pairwise(requests[:-1]):
        assert b.at - a.at >= 0.5 - EPS
    assert requests[-1].at <= finished + latency + EPS
    bound = max(0.5, latency) + EPS
    for kind, count, at in made:

        def has(b: dict[str, Any], kind: str = kind, count: int = count) -> bool:
            if kind == "out":
                return len(outputs(b)) >= count
            return f"line {count}\n" in b["logs"]

        assert first_carrying(requests, has).at - at <= bound
