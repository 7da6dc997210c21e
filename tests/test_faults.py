"""Receivers that misbehave: refused, reset, closed, hanging, slow, erroring, redirecting.

The service runs in-process; its webhooks go over real sockets to a
:class:`~tests.fault_helpers.FaultyReceiver` on 127.0.0.1 that misbehaves on purpose,
through :class:`~tests.fault_helpers.InFlight`, which counts what the service has in flight
per prediction. Timeouts, backoffs and budgets are small so that each test takes a second
or so of real time. What a test asserts for every fault:

- the prediction's own status and output are right, and its client is answered;
- the terminal request is delivered once the receiver recovers (or, when the answer is
  final or the budget is spent, given up with a log line saying so);
- a terminal request is retried under one ``webhook-id``; a non-terminal one never is;
- never more than one request of a prediction in flight; the service stays READY.

The timing promises under a slow receiver (the model not slowed by a single tick, updates
coalesced, memory bounded) are exact on trio's MockClock, at the end of this file.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from typing import Any

import httpx
import pytest
import trio

from .conftest import RecordingTransport, WebhookRequest, running_app
from .fault_helpers import (
    CLOSE,
    CUT_BODY,
    CUT_HEAD,
    ENDLESS,
    HANG,
    OK,
    RESET,
    TERMINAL,
    TRICKLE,
    Answer,
    FaultyReceiver,
    Hit,
    InFlight,
    Reply,
)

SECRET = "whsec_" + base64.b64encode(b"faults-faults-faults-faults-1234").decode()
FAST_RETRIES: dict[str, Any] = {
    "webhook_backoff_initial": 0.05,
    "webhook_backoff_max": 0.2,
    "webhook_timeout": 0.5,
    "webhook_retry_budget": 20.0,
    "webhook_secret": SECRET,
}


async def stream(n: int = 6) -> AsyncIterator[int]:
    for i in range(n):
        print(f"item {i}")
        await trio.sleep(0.01)
        yield i


async def start_receiver(nursery: trio.Nursery, receiver: FaultyReceiver, **kw: Any) -> None:
    await nursery.start(lambda task_status: receiver.run(task_status=task_status, **kw))


def terminal_fails(fault: Answer, times: int, progress: Answer = OK) -> Callable[[Hit], Answer]:
    """The first ``times`` terminal requests meet ``fault``, later ones 200; the
    non-terminal ones meet ``progress``."""
    count = 0

    def plan(hit: Hit) -> Answer:
        nonlocal count
        if not hit.terminal:
            return progress
        count += 1
        return fault if count <= times else OK

    return plan


def webhook_ids(hits: list[Hit]) -> list[str]:
    return [h.headers["webhook-id"] for h in hits]


async def predict(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    """A sync prediction: waits for the model, answers 200 with the final prediction."""
    response = await client.post("/predictions", json=body)
    assert response.status_code == 200, await response.get_data()
    result: dict[str, Any] = await response.get_json()
    return result


async def health(client: Any) -> str:
    body = await (await client.get("/health-check")).get_json()
    return str(body["status"])


# -- retryable faults: delivered once the receiver recovers ---------------------------------

RETRYABLE: dict[str, Answer] = {
    "reset": RESET,
    "closed-before-answer": CLOSE,
    "hangs": HANG,
    "answers-after-timeout": Reply(200, delay=1.0),
    "500": Reply(500),
    "503": Reply(503),
    "408": Reply(408),
    "429": Reply(429),
}


@pytest.mark.parametrize("fault", list(RETRYABLE), ids=list(RETRYABLE))
async def test_terminal_request_delivered_once_the_receiver_recovers(
    nursery: trio.Nursery, fault: str
) -> None:
    receiver = FaultyReceiver(plan=terminal_fails(RETRYABLE[fault], times=2))
    await start_receiver(nursery, receiver)
    transport = InFlight()
    async with running_app(stream, transport=transport, **FAST_RETRIES) as (app, client):
        response = await client.post("/predictions", json={"webhook": receiver.url})
        result = await response.get_json()
        assert response.status_code == 200
        assert result["status"] == "succeeded" and result["output"] == list(range(6))
        await receiver.wait_for(lambda r: bool(r.terminal_accepted), timeout=20)
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
        assert await health(client) == "READY"
    late = 3 if fault == "answers-after-timeout" else 1
    await receiver.wait_for(lambda r: r.holding == 0 and len(r.terminal_accepted) >= late, 10)

    terminal_hits = [h for h in receiver.hits if h.terminal]
    assert [h.answer for h in terminal_hits] == [RETRYABLE[fault]] * 2 + [OK]
    if fault == "answers-after-timeout":
        # The receiver answered 200 each time, after the service had given up waiting:
        # it processed the same terminal request three times. At-least-once, not once.
        assert len(receiver.terminal_accepted) == 3
    else:
        assert len(receiver.terminal_accepted) == 1
    final = receiver.terminal_accepted[-1].json
    assert final["status"] == "succeeded" and final["output"] == list(range(6))
    assert "item 5" in final["logs"]
    # Every attempt of the terminal request has the same webhook-id (receivers can
    # deduplicate); the start and output requests are never retried.
    assert len(set(webhook_ids(terminal_hits))) == 1
    progress_ids = webhook_ids([h for h in receiver.hits if not h.terminal])
    assert len(progress_ids) == len(set(progress_ids))
    assert receiver.hits[0].json["status"] == "starting"
    assert transport.most[result["id"]] == 1
    assert app.webhooks.terminal_failures == 0


async def test_refused_connections_until_the_receiver_listens(nursery: trio.Nursery) -> None:
    receiver = FaultyReceiver()
    await start_receiver(nursery, receiver, listening=False)
    transport = InFlight()
    async with running_app(stream, transport=transport, **FAST_RETRIES) as (app, client):
        response = await client.post("/predictions", json={"webhook": receiver.url})
        result = await response.get_json()
        assert result["status"] == "succeeded" and result["output"] == list(range(6))
        assert await health(client) == "READY"
        with trio.fail_after(20):
            while transport.terminal_errors < 3:
                await trio.sleep(0.01)
        receiver.listen()
        await receiver.wait_for(lambda r: bool(r.terminal_accepted), timeout=20)
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
    assert "ConnectError" in transport.errors
    # start and output were refused and never retried; the terminal request was
    # retried until the receiver listened, and then it is the only thing it got.
    assert [h.json["status"] for h in receiver.hits] == ["succeeded"]
    assert receiver.hits[0].json["output"] == list(range(6))
    assert transport.most[result["id"]] == 1
    assert app.webhooks.terminal_failures == 0


async def test_closed_before_the_answers_headers_end_is_retried_so_it_may_arrive_twice(
    nursery: trio.Nursery,
) -> None:
    """The receiver read the request and began its "200 OK", then the connection broke
    before the headers ended: the service cannot know the request was processed, so it
    retries, under the same webhook-id. At-least-once: the receiver sees it twice."""
    receiver = FaultyReceiver(plan=terminal_fails(CUT_HEAD, times=1, progress=CUT_HEAD))
    await start_receiver(nursery, receiver)
    transport = InFlight()
    async with running_app(stream, transport=transport, **FAST_RETRIES) as (app, client):
        result = await predict(client, {"webhook": receiver.url})
        assert result["status"] == "succeeded"
        await receiver.wait_for(lambda r: bool(r.terminal_accepted), timeout=20)
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
    assert "RemoteProtocolError" in transport.errors
    terminal_hits = [h for h in receiver.hits if h.terminal]
    assert [h.answer for h in terminal_hits] == [CUT_HEAD, OK]
    assert len(set(webhook_ids(terminal_hits))) == 1
    assert terminal_hits[-1].json == terminal_hits[0].json
    assert transport.most[result["id"]] == 1
    assert app.webhooks.terminal_failures == 0


@pytest.mark.parametrize("answer", [CUT_BODY, ENDLESS, TRICKLE])
async def test_a_200_whose_body_is_cut_or_never_ends_counts_as_delivered(
    nursery: trio.Nursery, answer: str
) -> None:
    """The status line is the receiver's answer: once a 200 is in, the request is not
    retried, whatever the body does; an endless body is not read into memory, nor
    waited for until the attempt times out."""
    receiver = FaultyReceiver(plan=lambda hit: answer)
    await start_receiver(nursery, receiver)
    transport = InFlight()
    settings = {**FAST_RETRIES, "webhook_timeout": 2.0}
    # a trickle holds each request for a second: only the terminal one here
    events = ["completed"] if answer == TRICKLE else None
    body = {"webhook": receiver.url, "webhook_events_filter": events}
    async with running_app(stream, transport=transport, **settings) as (app, client):
        result = await predict(client, body)
        assert result["status"] == "succeeded"
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
        assert await health(client) == "READY"
    receiver.release()
    assert [h.json["status"] for h in receiver.hits if h.terminal] == ["succeeded"]
    assert receiver.hits[0].json["status"] == ("succeeded" if events else "starting")
    assert app.webhooks.terminal_failures == 0
    # What the receiver managed to push: socket buffers and 64 KiB, not gigabytes.
    assert receiver.sent_bytes < 16 * 1024 * 1024
    assert transport.most[result["id"]] == 1


async def test_retry_after_is_honoured_over_real_sockets(nursery: trio.Nursery) -> None:
    receiver = FaultyReceiver(plan=terminal_fails(Reply(429, (("Retry-After", "1"),)), times=1))
    await start_receiver(nursery, receiver)
    async with running_app(stream, transport=InFlight(), **FAST_RETRIES) as (app, client):
        await client.post("/predictions", json={"webhook": receiver.url})
        await receiver.wait_for(lambda r: bool(r.terminal_accepted), timeout=20)
    first, second = (h for h in receiver.hits if h.terminal)
    assert second.at - first.at >= 1.0 - 0.01  # never sooner than the receiver asked
    assert app.webhooks.terminal_failures == 0


# -- final answers: not retried, given up with a log line -------------------------------


# (every other 4xx and 3xx is the same code path; test_webhooks.py has more on MockClock)
@pytest.mark.parametrize("status", [301, 307, 400, 404, 410, 422])
async def test_final_answers_are_given_up_at_once_with_a_log_line(
    nursery: trio.Nursery, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = FaultyReceiver()
    await start_receiver(nursery, elsewhere)
    headers = (("Location", elsewhere.url),) if status < 400 else ()
    receiver = FaultyReceiver(plan=terminal_fails(Reply(status, headers), times=99))
    await start_receiver(nursery, receiver)
    caplog.set_level(logging.INFO, logger="service")
    async with running_app(stream, transport=InFlight(), **FAST_RETRIES) as (app, client):
        result = await predict(client, {"webhook": receiver.url})
        assert result["status"] == "succeeded"
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
        assert await health(client) == "READY"
    assert [h.json["status"] for h in receiver.hits if h.terminal] == ["succeeded"]
    assert elsewhere.hits == []  # a redirect is not followed
    assert app.webhooks.terminal_failures == 1
    given_up = [r for r in caplog.records if "given up" in r.getMessage()]
    assert len(given_up) == 1 and given_up[0].levelno == logging.WARNING
    assert f"HTTP {status}; not retried" in given_up[0].getMessage()
    assert result["id"] in given_up[0].getMessage()


# -- receivers that never recover: the budget bounds the retries --------------------------


@pytest.mark.parametrize("fault", ["refused", "503", "hangs"])
async def test_receiver_that_never_recovers_is_given_up_after_the_budget(
    nursery: trio.Nursery, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    answer = {"refused": OK, "503": Reply(503), "hangs": HANG}[fault]
    receiver = FaultyReceiver(plan=lambda hit: answer)
    await start_receiver(nursery, receiver, listening=fault != "refused")
    transport = InFlight()
    budget = 0.6
    settings = {**FAST_RETRIES, "webhook_retry_budget": budget, "webhook_timeout": 0.3}
    caplog.set_level(logging.INFO, logger="service")
    async with running_app(stream, transport=transport, **settings) as (app, client):
        result = await predict(client, {"webhook": receiver.url})
        assert result["status"] == "succeeded"
        done_at = trio.current_time()
        with trio.fail_after(budget + 10):
            await app.webhooks.wait_idle()
        gave_up_at = trio.current_time()
        assert await health(client) == "READY"
        again = await (await client.post("/predictions", json={})).get_json()
        assert again["status"] == "succeeded"
    assert receiver.accepted == []
    assert app.webhooks.terminal_failures == 1
    # The budget bounds the whole delivery, attempts included (+ scheduling slack).
    assert gave_up_at - done_at <= budget + 1.0
    given_up = [r for r in caplog.records if "given up" in r.getMessage()]
    assert len(given_up) == 1 and given_up[0].levelno == logging.WARNING
    assert result["id"] in given_up[0].getMessage()
    terminal_attempts = (
        transport.terminal_errors
        if fault == "refused"
        else len([h for h in receiver.hits if h.terminal])
    )
    assert terminal_attempts >= 2
    assert transport.most[result["id"]] == 1


# -- the model is never held up by its receiver -----------------------------------------------


async def test_model_finishes_while_its_first_webhook_still_hangs(nursery: trio.Nursery) -> None:
    """With the default 10 s timeout, a receiver that never answers holds the start
    request: the model runs to its end and the client gets its answer meanwhile."""
    hanging = True
    receiver = FaultyReceiver(plan=lambda hit: HANG if hanging else OK)
    await start_receiver(nursery, receiver)
    transport = InFlight()
    settings = {**FAST_RETRIES, "webhook_timeout": 10.0}
    async with running_app(stream, transport=transport, **settings) as (app, client):
        with trio.fail_after(8):  # well inside the 10 s the start request may hang
            response = await client.post(
                "/predictions", json={"input": {"n": 30}, "webhook": receiver.url}
            )
        result = await response.get_json()
        assert result["status"] == "succeeded" and result["output"] == list(range(30))
        # The start request is still unanswered: the model never waited for it.
        assert receiver.accepted == []
        await receiver.wait_for(lambda r: r.holding == 1, timeout=5)
        assert len(receiver.hits) == 1
        assert receiver.hits[0].json["status"] == "starting"
        hanging = False
        receiver.release()  # the receiver hangs up on the start request, then recovers
        await receiver.wait_for(lambda r: bool(r.terminal_accepted), timeout=20)
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
    statuses = [h.json["status"] for h in receiver.hits]
    assert statuses[0] == "starting" and statuses[-1] == "succeeded"
    assert statuses.count("starting") == 1  # the lost start request was not retried
    assert receiver.terminal_accepted[-1].json["output"] == list(range(30))
    assert transport.most[result["id"]] == 1


async def test_many_predictions_to_one_hanging_receiver_one_request_each(
    nursery: trio.Nursery,
) -> None:
    hanging = True
    receiver = FaultyReceiver(plan=lambda hit: HANG if hanging else OK)
    await start_receiver(nursery, receiver)
    transport = InFlight()
    settings = {**FAST_RETRIES, "webhook_timeout": 10.0, "concurrency": 8}
    async with running_app(stream, transport=transport, **settings) as (app, client):
        ids: list[str] = []

        async def one(i: int) -> None:
            r = await client.post(
                "/predictions", json={"id": f"p{i}", "input": {"n": 20}, "webhook": receiver.url}
            )
            assert (await r.get_json())["status"] == "succeeded"
            ids.append(f"p{i}")

        with trio.fail_after(8):
            async with trio.open_nursery() as clients:
                for i in range(8):
                    clients.start_soon(one, i)
        assert receiver.accepted == []
        await receiver.wait_for(lambda r: r.holding == 8, timeout=5)  # one per prediction
        assert len(receiver.hits) == 8
        hanging = False
        receiver.release()
        await receiver.wait_for(lambda r: len(r.terminal_accepted) == 8, timeout=20)
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
    assert sorted(h.json["id"] for h in receiver.terminal_accepted) == sorted(ids)
    assert all(transport.most[i] == 1 for i in ids)
    assert sum(transport.most.values()) == 8


# -- on MockClock: a receiver that answers after 5 s -------------------------------------------


async def test_receiver_answering_after_5s_neither_slows_nor_piles_up(
    autojump_clock: Any,
) -> None:
    """20,000 outputs over 10 s against a receiver that takes 5 s per request: every
    output is made exactly on schedule, only a handful of requests go out (each with the
    latest state: nothing queues), one at a time, and the last carries everything."""
    made: list[float] = []
    n, seconds = 20_000, 10.0

    async def firehose(x: int = 0) -> AsyncIterator[int]:
        for i in range(n):
            if i % 100 == 0:
                await trio.sleep(seconds / (n / 100))
            made.append(trio.current_time())
            yield i

    async def five_seconds(request: WebhookRequest, k: int) -> httpx.Response:
        await trio.sleep(5.0)
        return httpx.Response(200)

    transport = RecordingTransport(responder=five_seconds)
    async with running_app(firehose, transport=transport) as (app, client):
        t0 = trio.current_time()
        result = await (
            await client.post("/predictions", json={"webhook": "http://r.test/"})
        ).get_json()
        answered = trio.current_time()
        with trio.fail_after(3600):
            await app.webhooks.wait_idle()
        delivered = trio.current_time()
    assert result["status"] == "succeeded" and len(result["output"]) == n
    # Not slowed by a single tick: each batch of 100 was made at its own scheduled time.
    expected = [t0 + (i // 100 + 1) * seconds / (n / 100) for i in range(n)]
    assert made == pytest.approx(expected, abs=1e-6)
    assert answered - t0 == pytest.approx(seconds, abs=1e-6)
    bodies = transport.bodies
    assert len(bodies) <= 1 + math.ceil(seconds / 5.0) + 1
    assert bodies[-1]["output"] == list(range(n))
    for before, after in pairwise(bodies):
        assert len(after["output"] or []) >= len(before["output"] or [])
    assert transport.max_in_flight == 1
    # the terminal request waits for at most the one update on the wire, then takes 5 s
    assert delivered - answered <= 5.0 + 5.0 + 1e-6
    assert [b["status"] in TERMINAL for b in bodies][-1]


async def test_a_healthy_receiver_keeps_one_connection(nursery: trio.Nursery) -> None:
    """Reading only a bounded part of each answer still lets a connection be used again:
    one prediction's start, updates and completed go over one kept-alive connection."""
    receiver = FaultyReceiver(
        plan=lambda hit: Reply(200, (("Content-Type", "text/plain"),), body=b"thanks!")
    )
    await start_receiver(nursery, receiver)
    settings = {**FAST_RETRIES, "webhook_interval": 0.05}
    async with running_app(stream, transport=InFlight(), **settings) as (app, client):
        await predict(client, {"input": {"n": 30}, "webhook": receiver.url})
        with trio.fail_after(20):
            await app.webhooks.wait_idle()
    assert len(receiver.accepted) >= 3
    assert receiver.connections == 1


# -- hostile answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "retry_after",
    ["0 JAN 2147483648 0:0 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "1e309", "-5", "soon", ""],
)
async def test_a_retry_after_of_any_shape_never_stops_the_retries(
    autojump_clock: Any, retry_after: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by fuzzing: a date whose year overflows made the delay computation raise,
    which ended the webhook task: the terminal request was never retried (and an ERROR
    traceback was logged). A value that makes no sense is ignored; one too far away
    gives up at once, with the usual log line."""
    attempts: list[WebhookRequest] = []

    async def once_then_ok(request: WebhookRequest, n: int) -> httpx.Response:
        if request.json["status"] not in TERMINAL:
            return httpx.Response(200)
        attempts.append(request)
        headers = {"Retry-After": retry_after} if len(attempts) == 1 else {}
        return httpx.Response(503 if len(attempts) == 1 else 200, headers=headers)

    transport = RecordingTransport(responder=once_then_ok)
    async with running_app(stream, transport=transport) as (app, client):
        await predict(client, {"webhook": "http://r.test/"})
        with trio.fail_after(3600):
            await app.webhooks.wait_idle()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    if retry_after.startswith("Fri, 31 Dec 9999"):  # further than the 5 min budget
        assert len(attempts) == 1 and app.webhooks.terminal_failures == 1
        assert any("past the retry budget" in r.getMessage() for r in caplog.records)
    else:
        assert len(attempts) == 2 and app.webhooks.terminal_failures == 0
        assert transport.bodies[-1]["status"] == "succeeded"
