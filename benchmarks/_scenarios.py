"""The six scenarios of issue 5, each run against one server at a time.

Every scenario function takes the run's :class:`Context`, a server name and the
repetition number, starts the server(s) it needs, drives them, and records its figures in
``ctx.results``. Each case has a time cap: a case that hits it records what it saw by
then, says so in a note, and is not repeated on that server (it would only hit it again).
"""

from __future__ import annotations

import functools
import itertools
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from ._analysis import analyse_stream, percentile, stamps
from ._receiver import WebhookReceiver
from ._results import Results, Value
from ._servers import CogPeer, Server, ServerStartError, sampling_rss, start_server

__all__ = ["SCENARIOS", "Context", "Sizes"]

ASYNC = {"prefer": "respond-async"}
#: Scenario 5: how long one hot-path prediction may take before it is cut.
HOT_PATH_CAP = 60.0
#: Scenario 4: requests in flight at once, each worker on a keep-alive connection of its own.
WORKERS = 32
MiB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``FULL``, ``QUICK`` and ``SMOKE`` are the presets."""

    name: str
    #: Scenario 1: (generator kind, outputs, seconds) per case.
    stream_cases: tuple[tuple[str, int, float], ...]
    #: Scenario 2: sequential predictions per repetition.
    latency_predictions: int
    #: Scenario 3: how long, and at most how many requests.
    sync_seconds: float
    sync_max_requests: int
    #: Scenario 4: predictions at once, per case; how long each model sleeps.
    concurrency_levels: tuple[int, ...]
    concurrency_delay: float
    #: Scenario 5: outputs of the hot-path model.
    hot_outputs: int
    #: Scenario 6: outputs over seconds, and the slow receiver's delay per request.
    slow_outputs: int
    slow_seconds: float
    slow_delay: float
    #: Seconds a case may run past its nominal length before it is cut.
    slack: float
    #: After the terminal webhook, how long without a request before a case is over
    #: (a server may send bodies after the terminal one).
    quiet: float
    repeat: int


FULL = Sizes(
    name="full",
    stream_cases=(
        ("async", 1_000, 2.0),
        ("sync", 1_000, 2.0),
        ("async", 100_000, 5.0),
        ("sync", 100_000, 5.0),
    ),
    latency_predictions=50,
    sync_seconds=5.0,
    sync_max_requests=100_000,
    concurrency_levels=(100, 1_000, 10_000),
    concurrency_delay=1.0,
    hot_outputs=1_000_000,
    slow_outputs=1_000,
    slow_seconds=4.0,
    slow_delay=1.0,
    slack=20.0,
    quiet=0.5,
    repeat=3,
)
QUICK = Sizes(
    name="quick",
    stream_cases=(
        ("async", 1_000, 2.0),
        ("sync", 1_000, 2.0),
        ("async", 20_000, 3.0),
        ("sync", 20_000, 3.0),
    ),
    latency_predictions=20,
    sync_seconds=2.0,
    sync_max_requests=20_000,
    concurrency_levels=(100, 1_000),
    concurrency_delay=1.0,
    hot_outputs=200_000,
    slow_outputs=500,
    slow_seconds=3.0,
    slow_delay=1.0,
    slack=10.0,
    quiet=0.5,
    repeat=1,
)
SMOKE = Sizes(
    name="smoke",
    stream_cases=(("async", 50, 0.3), ("sync", 50, 0.3)),
    latency_predictions=3,
    sync_seconds=0.3,
    sync_max_requests=200,
    concurrency_levels=(20,),
    concurrency_delay=0.2,
    hot_outputs=2_000,
    slow_outputs=20,
    slow_seconds=0.4,
    slow_delay=0.2,
    slack=10.0,
    quiet=0.2,
    repeat=1,
)
PRESETS = {s.name: s for s in (FULL, QUICK, SMOKE)}


@dataclass
class Context:
    sizes: Sizes
    servers: tuple[str, ...]
    peer: CogPeer | None
    receiver: WebhookReceiver
    results: Results
    workdir: Path
    #: trio time after which no new case starts.
    deadline: float
    log: Callable[[str], None]
    #: Keep one server per (name, model) for the whole run (the smoke run: it saves the
    #: start-up time; figures of memory are then not per case).
    reuse_servers: bool = False
    capped: set[tuple[str, str]] = field(default_factory=set)
    _managers: list[AbstractAsyncContextManager[Server]] = field(default_factory=list)
    _cache: dict[tuple[str, str], Server] = field(default_factory=dict)
    _keys: itertools.count[int] = field(default_factory=itertools.count)

    def key(self, tag: str) -> str:
        return f"{tag}-{next(self._keys)}"

    def time_left(self) -> float:
        return self.deadline - trio.current_time()

    @asynccontextmanager
    async def server(self, name: str, model: str, concurrency: int) -> AsyncIterator[Server]:
        if not self.reuse_servers:
            async with start_server(
                name, model, concurrency=concurrency, workdir=self.workdir, peer=self.peer
            ) as server:
                yield server
            return
        if (name, model) not in self._cache:
            await self.prewarm(name, (model,))
        yield self._cache[(name, model)]

    async def prewarm(self, name: str, models: tuple[str, ...]) -> None:
        """With ``reuse_servers``, start the servers of ``models`` at once, side by side."""
        if not self.reuse_servers:
            return
        most = max(self.sizes.concurrency_levels)

        async def start(model: str) -> None:
            manager = start_server(
                name, model, concurrency=most, workdir=self.workdir, peer=self.peer
            )
            self._cache[(name, model)] = await manager.__aenter__()
            self._managers.append(manager)

        async with trio.open_nursery() as nursery:
            for model in models:
                nursery.start_soon(start, model)

    async def aclose(self) -> None:
        """Stop the kept servers, side by side."""
        async with trio.open_nursery() as nursery:
            for manager in self._managers:
                nursery.start_soon(manager.__aexit__, None, None, None)
        self._managers.clear()
        self._cache.clear()

    def was_capped(self, case: str, server: str) -> bool:
        return (case, server) in self.capped

    def cap(self, scenario: str, case: str, server: str, text: str) -> None:
        self.capped.add((case, server))
        self.results.note(scenario, f"{server}: {text}; not repeated.")

    def begin(self, scenario: str, case: str, server: str, rep: int, what: str = "") -> bool:
        """Whether to run a case now (not capped before, time left), logging it if so."""
        if self.was_capped(case, server):
            return False
        if self.time_left() <= 0:
            self.results.note(
                scenario, f"{server}: repetition {rep + 1} skipped: the run's time budget was spent"
            )
            return False
        self.log(f"{scenario}{what} — {server}, repetition {rep + 1}")
        return True

    @contextmanager
    def watching_cpu(self, scenario: str, server: str) -> Iterator[None]:
        """Notes when the benchmark's own process was the busy one during a case."""
        wall, cpu = time.monotonic(), time.process_time()
        yield
        busy = (time.process_time() - cpu) / max(1e-9, time.monotonic() - wall)
        if busy > 0.8:
            self.results.note(
                scenario,
                f"{server}: the benchmark's own process (receiver and driver) was busy "
                f"{busy:.0%} of the case: its figures may be bounded by the receiver",
            )

    def recorder(self, scenario: str, server: str) -> Recorder:
        return Recorder(self.results, scenario, server)


@dataclass
class Recorder:
    """Records figures of one scenario and server: ``rec(metric, value, unit=...)``."""

    results: Results
    scenario: str
    server: str

    def __call__(
        self, metric: str, value: Value, *, unit: str = "", better: str = "", digits: int = 1
    ) -> None:
        self.results.record(
            self.scenario, metric, self.server, value, unit=unit, better=better, digits=digits
        )

    def note(self, text: str) -> None:
        self.results.note(self.scenario, f"{self.server}: {text}")


def client(server: Server, *, timeout: float = 30.0) -> httpx.AsyncClient:
    """A client of one keep-alive connection to ``server``."""
    return httpx.AsyncClient(
        base_url=server.url,
        timeout=timeout,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        verify=_tls_context(),  # never used (plain http), but httpx builds one per client
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~40 ms: once per run, not once per client.
    return ssl.create_default_context()


# -- 1. streaming under the throttler ----------------------------------------------------


async def streaming(ctx: Context, name: str, rep: int) -> None:
    for kind, n, seconds in ctx.sizes.stream_cases:
        await _stream_case(ctx, name, rep, kind, n, seconds)


async def _stream_case(
    ctx: Context, name: str, rep: int, kind: str, n: int, seconds: float
) -> None:
    scenario = f"1. Streaming: {kind} generator, {n:,} outputs + {n:,} log lines over {seconds:g} s"
    case = f"s1-{kind}-{n}"
    if not ctx.begin(scenario, case, name, rep):
        return
    rec = ctx.recorder(scenario, name)
    cap = seconds + ctx.sizes.slack
    receiver = ctx.receiver
    async with (
        ctx.server(name, _stream_model(kind), 1) as server,
        client(server) as http,
    ):
        key = ctx.key(case)
        t0 = time.monotonic()
        r = await http.post(
            "/predictions",
            json={"input": {"n": n, "seconds": seconds}, "webhook": receiver.url(key)},
            headers=ASYNC,
        )
        if r.status_code != 202:
            rec.note(f"create answered {r.status_code}: {r.text[:200]}")
            return
        with ctx.watching_cpu(scenario, name):
            got = await receiver.wait_terminal(key, trio.current_time() + cap)
            if got:
                await receiver.wait_quiet(ctx.sizes.quiet, trio.current_time() + 3.0)
    arrivals = receiver.arrivals[key]
    stats = analyse_stream(arrivals, n, receiver.fullest.get(key), receiver.terminal_body.get(key))
    receiver.forget(key)
    if not got:
        ctx.cap(
            scenario,
            case,
            name,
            f"the terminal webhook had not arrived {cap:g} s after the request "
            f"({len(arrivals):,} requests by then; the server was then stopped)",
        )
    rec("webhook requests for the prediction", stats.requests, better="lower", digits=0)
    rec("most requests in any 500 ms", stats.max_in_500ms, better="lower", digits=0)
    rec("staleness, median", _ms(stats.staleness_median), unit="ms", better="lower")
    rec("staleness, max", _ms(stats.staleness_max), unit="ms", better="lower")
    never = f"outputs + log lines never delivered (of {2 * n:,})"
    rec(never, stats.undelivered, better="lower", digits=0)
    rec("bodies older than one before them", stats.out_of_order, better="lower", digits=0)
    rec("bodies in order, terminal last", stats.in_order)
    rec("model's own run time (predict_time)", stats.predict_time, unit="s", digits=2)
    rate = f"model's output rate, from the stamps delivered (schedule: {n / seconds:,.0f}/s)"
    rec(rate, stats.made_per_second, unit="1/s", better="higher", digits=0)
    rec("final body complete", stats.final_complete)
    rec(
        "terminal webhook after the last output",
        _ms(stats.terminal_delay),
        unit="ms",
        better="lower",
    )
    # The plot shows the last repetition.
    every = max(1, len(stats.made) // 2000)
    ctx.results.series.setdefault(f"{kind} generator, {n:,} outputs over {seconds:g} s", {})[
        name
    ] = {
        "arrivals": [(a.at - t0, a.outputs) for a in arrivals],
        "made": [(t - t0, i) for i, t in enumerate(stats.made)][::every],
        "n": n,
    }


def _stream_model(kind: str) -> str:
    return "Stream" if kind == "async" else "SyncStream"


# -- 2. latency of start and completed ---------------------------------------------------


async def latency(ctx: Context, name: str, rep: int) -> None:
    scenario = "2. Latency of the start and completed webhooks (async model, 50 ms)"
    if not ctx.begin(scenario, "s2", name, rep):
        return
    rec = ctx.recorder(scenario, name)
    count = ctx.sizes.latency_predictions
    receiver = ctx.receiver
    starts: list[float] = []
    completes: list[float] = []
    busy = 0
    async with ctx.server(name, "Stream", 1) as server, client(server) as http:
        end = trio.current_time() + count * 1.0 + ctx.sizes.slack
        for _ in range(count):
            if trio.current_time() > end:
                rec.note("stopped at the case's time cap")
                break
            key = ctx.key("s2")
            body = {
                "input": {"n": 1, "delay": 0.05},
                "webhook": receiver.url(key),
                "webhook_events_filter": ["start", "completed"],
            }
            for _ in range(200):  # a slot may be freed just after the terminal webhook
                t_send = time.monotonic()
                r = await http.post("/predictions", json=body, headers=ASYNC)
                if r.status_code != 409:
                    break
                busy += 1
                await trio.sleep(0.005)
            if r.status_code != 202:
                rec.note(f"create answered {r.status_code}")
                continue
            await receiver.wait_terminal(key, trio.current_time() + 10.0)
            arrivals = receiver.arrivals[key]
            if arrivals:
                starts.append(arrivals[0].at - t_send)
            terminal = receiver.terminal_body.get(key)
            if terminal is not None:
                made, _ = stamps(terminal)
                if made:
                    completes.append(receiver.terminal_at[key] - made[-1])
            receiver.forget(key)
    rec(
        "start: p50, from sending the request",
        _ms(percentile(starts, 50)),
        unit="ms",
        better="lower",
        digits=2,
    )
    rec("start: p99", _ms(percentile(starts, 99)), unit="ms", better="lower", digits=2)
    rec(
        "completed: p50, from the model's last output",
        _ms(percentile(completes, 50)),
        unit="ms",
        better="lower",
        digits=2,
    )
    rec("completed: p99", _ms(percentile(completes, 99)), unit="ms", better="lower", digits=2)
    rec(f"terminal webhooks received (of {count})", len(completes), better="higher", digits=0)
    rec("409 answers (slot still busy) before a create succeeded", busy, better="lower", digits=0)


# -- 3. sequential sync throughput -------------------------------------------------------


async def sync_throughput(ctx: Context, name: str, rep: int) -> None:
    scenario = "3. Sequential sync predictions, trivial model, one keep-alive connection"
    if not ctx.begin(scenario, "s3", name, rep):
        return
    rec = ctx.recorder(scenario, name)
    ok = wrong = 0
    codes: Counter[int] = Counter()
    latencies: list[float] = []
    async with ctx.server(name, "Trivial", 1) as server, client(server) as http:
        for i in range(10):  # warm-up: imports, connection
            await http.post("/predictions", json={"input": {"x": i}})
        t0 = time.monotonic()
        end = t0 + ctx.sizes.sync_seconds
        for i in range(ctx.sizes.sync_max_requests):
            start = time.monotonic()
            if start >= end:
                break
            r = await http.post("/predictions", json={"input": {"x": i}})
            latencies.append(time.monotonic() - start)
            if r.status_code != 200:
                codes[r.status_code] += 1
            elif r.json().get("output") != i + 1:
                wrong += 1
            else:
                ok += 1
        elapsed = time.monotonic() - t0
    rec("successful predictions per second", ok / elapsed, unit="1/s", better="higher")
    rec("latency p50", _ms(percentile(latencies, 50)), unit="ms", better="lower", digits=2)
    rec("latency p99", _ms(percentile(latencies, 99)), unit="ms", better="lower", digits=2)
    rec("answers not 200", sum(codes.values()), better="lower", digits=0)
    rec("200 with a wrong output", wrong, better="lower", digits=0)
    if codes:
        listed = ", ".join(f"{code} × {count}" for code, count in sorted(codes.items()))
        rec.note(f"answers not 200 in repetition {rep + 1}: {listed}")


# -- 4. many async predictions at once ---------------------------------------------------


async def concurrency(ctx: Context, name: str, rep: int) -> None:
    for size in ctx.sizes.concurrency_levels:
        await _concurrency_case(ctx, name, rep, size)


async def _concurrency_case(ctx: Context, name: str, rep: int, size: int) -> None:
    delay = ctx.sizes.concurrency_delay
    scenario = (
        f"4. {size:,} async predictions at once ({delay:g} s model), each with a webhook "
        f"(--concurrency / COG_MAX_CONCURRENCY {size:,})"
    )
    case = f"s4-{size}"
    if not ctx.begin(scenario, case, name, rep):
        return
    rec = ctx.recorder(scenario, name)
    cap = ctx.sizes.slack + delay + size * 0.004
    receiver = ctx.receiver
    receiver.clear()
    keys = [ctx.key(case) for _ in range(size)]
    try:
        async with ctx.server(name, "Stream", size) as server, sampling_rss(server.pid) as rss:
            before = rss.samples[0][1]
            deadline = trio.current_time() + cap
            t0 = time.monotonic()
            with ctx.watching_cpu(scenario, name):
                answers = await _submit_all(server, receiver, keys, delay, deadline)
                accepted = answers["202"]
                got = await receiver.wait_until(
                    lambda: len(receiver.terminal_at) >= accepted, deadline
                )
                await receiver.wait_quiet(ctx.sizes.quiet, trio.current_time() + 2.0)
    except ServerStartError as exc:
        ctx.cap(scenario, case, name, f"the server did not start: {exc}")
        return
    delivered = len(receiver.terminal_at)
    requests = sum(len(v) for v in receiver.arrivals.values())
    last = max(receiver.terminal_at.values(), default=t0)
    receiver.clear()
    if not got:
        ctx.cap(scenario, case, name, f"cut at the {cap:g} s cap")
    refused = {k: v for k, v in answers.items() if k != "202"}
    if refused:
        listed = ", ".join(f"{k} × {v}" for k, v in sorted(refused.items()))
        rec.note(f"answers other than 202 in repetition {rep + 1}: {listed}")
    rec(
        "predictions completed per second (first request to last terminal webhook)",
        delivered / (last - t0) if last > t0 else None,
        unit="1/s",
        better="higher",
    )
    rec(f"accepted (202) of {size:,}", accepted, better="higher", digits=0)
    rec(f"terminal webhooks delivered of {size:,}", delivered, better="higher", digits=0)
    rec("webhook requests received", requests, digits=0)
    rec(
        "peak RSS of the server (all its processes)",
        rss.peak / MiB,
        unit="MiB",
        better="lower",
        digits=0,
    )
    rec(
        "RSS growth during the case",
        (rss.peak - before) / MiB,
        unit="MiB",
        better="lower",
        digits=0,
    )


async def _submit_all(
    server: Server, receiver: WebhookReceiver, keys: list[str], delay: float, deadline: float
) -> Counter[str]:
    """Create one async prediction per key, ``WORKERS`` at a time, until ``deadline``;
    returns how the server answered (status codes, or exception names)."""
    answers: Counter[str] = Counter()
    todo = iter(keys)

    async def submit() -> None:
        # One client (and connection) per worker: httpx's pool costs O(waiting requests
        # x connections) per request, which made one shared client this driver's bottleneck.
        async with client(server) as http:
            for key in todo:  # shared by the workers: each key is taken once
                body = {"input": {"n": 1, "delay": delay}, "webhook": receiver.url(key)}
                try:
                    r = await http.post("/predictions", json=body, headers=ASYNC)
                    answers[str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    answers[type(exc).__name__] += 1

    with trio.move_on_at(deadline):
        async with trio.open_nursery() as nursery:
            for _ in range(min(WORKERS, len(keys))):
                nursery.start_soon(submit)
    return answers


# -- 5. hot-path cost of webhooks ---------------------------------------------------------


async def hot_path(ctx: Context, name: str, rep: int) -> None:
    n = ctx.sizes.hot_outputs
    scenario = f"5. Hot path: an async generator yielding {n:,} small outputs"
    case = "s5"
    rec = ctx.recorder(scenario, name)
    receiver = ctx.receiver
    cap = HOT_PATH_CAP
    run_times: dict[str, float] = {}
    for variant in ("without webhook", "with webhook"):
        if not ctx.begin(scenario, case, name, rep, f", {variant}"):
            return
        async with ctx.server(name, "Stream", 1) as server, client(server, timeout=cap) as http:
            key = ctx.key(case)
            body: dict[str, Any] = {"input": {"n": n, "stamp": False, "checkpoint_every": 1000}}
            if variant == "with webhook":
                body["webhook"] = receiver.url(key)
            t_send = time.monotonic()
            try:
                r = await http.post("/predictions", json=body)
            except httpx.TimeoutException:
                rec(f"model run time, {variant}", f"> {cap:g} s", unit="s", better="lower")
                ctx.cap(scenario, case, name, f"{variant}: no answer within {cap:g} s")
                return
            wall = time.monotonic() - t_send
            prediction = r.json() if r.status_code == 200 else {}
            output = prediction.get("output") or []
            if prediction.get("status") != "succeeded" or len(output) != n:
                rec.note(
                    f"{variant}: answered {r.status_code}, status {prediction.get('status')}, "
                    f"{len(output):,} outputs"
                )
                return
            run_times[variant] = float(prediction["metrics"]["predict_time"])
            rec(
                f"model run time, {variant}", run_times[variant], unit="s", better="lower", digits=2
            )
            rec(f"request to answer, {variant}", wall, unit="s", better="lower", digits=2)
            if variant == "with webhook":
                got = await receiver.wait_terminal(key, trio.current_time() + 10.0)
                rec(
                    "webhook requests (within 10 s of the answer)",
                    len(receiver.arrivals[key]),
                    digits=0,
                )
                rec("terminal webhook within 10 s of the answer", got)
                receiver.forget(key)
    ratio = run_times["with webhook"] / run_times["without webhook"]
    rec("model run time with ÷ without webhook", ratio, better="lower", digits=2)


# -- 6. slow receiver ---------------------------------------------------------------------


async def slow_receiver(ctx: Context, name: str, rep: int) -> None:
    n, seconds, slow = ctx.sizes.slow_outputs, ctx.sizes.slow_seconds, ctx.sizes.slow_delay
    scenario = (
        f"6. Slow receiver ({slow:g} s per request) vs fast: sync generator, "
        f"{n:,} outputs + log lines over {seconds:g} s"
    )
    rec = ctx.recorder(scenario, name)
    receiver = ctx.receiver
    run_times: dict[str, float] = {}
    for variant, delay in (("fast", 0.0), ("slow", slow)):
        case = f"s6-{variant}"
        if not ctx.begin(scenario, case, name, rep, f", {variant} receiver"):
            continue
        cap = seconds + ctx.sizes.slack
        async with ctx.server(name, "SyncStream", 1) as server, client(server, timeout=cap) as http:
            key = ctx.key(case)
            async with sampling_rss(server.pid, 0.05) as rss:
                before = rss.samples[0][1]
                body = {
                    "input": {"n": n, "seconds": seconds},
                    "webhook": receiver.url(key, delay=delay),
                }
                r = await http.post("/predictions", json=body)
                prediction = r.json() if r.status_code == 200 else {}
                got = await receiver.wait_terminal(key, trio.current_time() + cap)
                if got:
                    await receiver.wait_quiet(
                        delay + ctx.sizes.quiet, trio.current_time() + 3 * delay + 2
                    )
        arrivals = receiver.arrivals[key]
        stats = analyse_stream(
            arrivals, n, receiver.fullest.get(key), receiver.terminal_body.get(key)
        )
        receiver.forget(key)
        if not got:
            ctx.cap(scenario, case, name, f"{variant}: no terminal webhook within {cap:g} s")
        if prediction.get("status") != "succeeded":
            rec.note(f"{variant}: answered {r.status_code}")
            continue
        run_times[variant] = float(prediction["metrics"]["predict_time"])
        rec(
            f"model run time, {variant} receiver",
            run_times[variant],
            unit="s",
            better="lower",
            digits=2,
        )
        rec(f"webhook requests, {variant} receiver", stats.requests, digits=0)
        rec(
            f"outputs per webhook request, {variant} receiver",
            n / stats.requests if stats.requests else None,
            better="higher",
        )
        rec(
            f"RSS growth during the prediction, {variant} receiver",
            (rss.peak - before) / MiB,
            unit="MiB",
            better="lower",
        )
        rec(
            f"terminal webhook after the last output, {variant} receiver",
            _ms(stats.terminal_delay),
            unit="ms",
            better="lower",
            digits=0,
        )
        rec(f"final body complete, {variant} receiver", stats.final_complete)
    if len(run_times) == 2:
        rec(
            "model run time, slow ÷ fast receiver",
            run_times["slow"] / run_times["fast"],
            better="lower",
            digits=2,
        )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


SCENARIOS: dict[str, Callable[[Context, str, int], Any]] = {
    "streaming": streaming,
    "latency": latency,
    "sync": sync_throughput,
    "concurrency": concurrency,
    "hot-path": hot_path,
    "slow-receiver": slow_receiver,
}
