"""Hostile and malformed input, by property-based fuzzing with hypothesis.

Each test runs one app (in-process, Quart's test client; webhooks go to a
:class:`RecordingTransport`, never to the network) and throws thousands of generated
requests at it: arbitrary JSON and non-JSON bodies, invalid UTF-8, NaN and huge numbers,
ids with path and header metacharacters, webhook URLs with odd schemes or credentials,
wrong content types. What must hold for every single one:

- the answer is never a 5xx: a client's mistake is a 4xx with ``{"detail": ...}``, and
  a prediction that is accepted is rendered as the prediction object;
- no task crashes: nothing is logged at ERROR (Quart logs an unhandled route exception
  there, the webhook task logs a bug of its own there), and the service is READY after.

hypothesis calls a plain function; it runs in a worker thread here and reaches the app
through ``trio.from_thread.run``. ``FUZZ_EXAMPLES`` (default 1000) scales every test's
case count: about 3,200 in all by default, 15 to 20 s here (hypothesis's own generation
is most of it); try ``FUZZ_EXAMPLES=20000`` for a long run.

The last tests turn it around: the receiver is hostile (any status, any ``Retry-After``,
any body), and the terminal delivery must still end, delivered or given up.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis
import pytest
import trio
from hypothesis import strategies as st

from service import Config, Input
from service._webhooks import WebhookSender, _retry_after

from .conftest import PREDICTION_FIELDS, RecordingTransport, real_server, running_app

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


TAGS = Input(default=[], max_length=5)
EXTRA = Input(default={})


class Echo:
    """A model with one input of each common kind; prints and returns what it got."""

    def predict(
        self,
        text: str = "",
        n: int = Input(default=1, ge=0, le=3),
        ratio: float = 0.5,
        flag: bool = False,
        choice: str = Input(default="a", choices=["a", "b"]),
        tags: list[str] = TAGS,
        extra: dict[str, Any] = EXTRA,
    ) -> dict[str, Any]:
        print(text)
        logging.getLogger("model").warning("ratio %r", ratio)
        return {"text": text * n, "ratio": ratio, "flag": flag, "tags": tags, "extra": extra}


# -- strategies ------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and infinities included: they cannot be JSON, the server says 400
    st.text(),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)

METACHARACTERS = [
    "../../etc/passwd",
    "..",
    ".",
    "a/b",
    "a%2Fb",
    "a\\b",
    "a\r\nSet-Cookie: x=y",
    "a\nb",
    "a\x00b",
    "a b",
    "a?b=c",
    "a#b",
    "a;b",
    "<script>",
    "é",
    "\ud800",
    "a" * 129,
    "",
    " ",
    "*",
    "%",
    "%00",
    "{id}",
]
ids = st.one_of(
    st.from_regex(ID, fullmatch=True),
    st.sampled_from(METACHARACTERS),
    st.text(max_size=140),
    json_values,
)

ODD_URLS = [
    "file:///etc/passwd",
    "ftp://example.test/x",
    "gopher://example.test/",
    "javascript:alert(1)",
    "data:text/plain,hi",
    "unix:/var/run/docker.sock",
    "mailto:a@example.test",
    "http://user:pass@example.test/",
    "https://:secret@example.test/",
    "http://user@example.test/",
    "http:///nohost",
    "http://",
    "http://example.test:99999/",
    "http://example.test:-1/",
    "http://example.test:80:80/",
    "http://[::1]:80/",
    "http://[::1/",
    "http://127.0.0.1:0/",
    "http://0.0.0.0/",
    "http://example.test/\r\nX-Injected: 1",
    "http://example.test/%0d%0aX-Injected:%201",
    "http://exa mple.test/",
    "http://ü.example.test/",
    "http://xn--/",
    "http://xn--n3h.net/",
    "http://☃.net/",
    "http://example.test/" + "a" * 70_000,
    "http://" + "a" * 300 + ".test/",
    "HTTP://EXAMPLE.TEST/",
    " http://example.test/",
    "//example.test/p",
    "example.test/p",
    "http://example.test#frag",
    "http://example.test/?token=abc&x=%ff",
]
urls = st.one_of(
    st.sampled_from(ODD_URLS),
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}/{path}",
        st.sampled_from(["http", "https", "HTTP", "ws", "file", "ftp", ""]),
        st.text(max_size=20),
        st.text(max_size=20),
    ),
    st.text(max_size=40),
    json_values,
)
events = st.one_of(
    st.lists(st.sampled_from(["start", "output", "logs", "completed", "START", "", "x"])),
    json_values,
)
inputs = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "text": st.text() | json_values,
            "n": st.integers(min_value=-5, max_value=5) | json_values,
            "ratio": st.floats() | json_values,
            "flag": st.booleans() | json_values,
            "choice": st.sampled_from(["a", "b", "c", "A"]) | json_values,
            "tags": st.lists(st.text(max_size=5), max_size=7) | json_values,
            "extra": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
            "unknown": json_values,
            "": json_values,
        },
    ),
    json_values,
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "id": ids,
            "input": inputs,
            "webhook": urls,
            "webhook_events_filter": events,
            "output_file_prefix": json_values,
        },
    ),
    json_values,
)
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "",
    ";;;=",
]
prefer = st.sampled_from([None, "respond-async", "respond-async; wait=1", "wait=0", ",,;", "é"])


def encode(body: Any) -> bytes:
    """JSON as a sloppy client writes it: NaN and Infinity as bare words, lone
    surrogates as escapes."""
    return json.dumps(body, allow_nan=True).encode()


def in_path(text: str, safe: str = "") -> str:
    """Percent-encode any text for a path, lone surrogates too (as their raw bytes)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe=safe)


def mangle(data: bytes, cut: int, junk: bytes) -> bytes:
    """Damage an encoded body: cut it somewhere and splice junk (invalid UTF-8) in."""
    at = cut % (len(data) + 1)
    return data[:at] + junk + data[at:]


# -- the harness -------------------------------------------------------------------------


class Fuzzer:
    """Sends requests from hypothesis's thread into the running app and checks each answer."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.statuses: dict[int, int] = {}

    async def _send(
        self, method: str, path: str, data: bytes, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        response = await self.client.open(path, method=method, data=data, headers=headers)
        return (
            response.status_code,
            response.headers.get("Content-Type", ""),
            await response.get_data(as_text=False),
        )

    def send(
        self,
        method: str,
        path: str,
        data: bytes = b"",
        content_type: str | None = "application/json",
        prefer: str | None = None,
    ) -> tuple[int, Any]:
        headers = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if prefer is not None:
            headers["Prefer"] = prefer
        status, ctype, raw = trio.from_thread.run(self._send, method, path, data, headers)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status < 500, (status, raw[:500])
        assert ctype == "application/json", (status, ctype, raw[:200])
        answer = json.loads(raw)  # strict: NaN would not parse back in other clients either
        if status >= 400:
            assert set(answer) == {"detail"} and answer["detail"], answer
        elif method != "GET":
            assert set(answer) == PREDICTION_FIELDS and ID.fullmatch(answer["id"]), answer
        return status, answer


def no_5xx_or_crash(
    caplog: pytest.LogCaptureFixture,
) -> Callable[[], None]:
    caplog.set_level(logging.WARNING)

    def check() -> None:
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, [r.getMessage() for r in errors][:5]
        # The recording transport accepts everything: a terminal webhook given up means
        # the service accepted a webhook URL it then could not send to.
        given_up = [r.getMessage() for r in caplog.records if "given up" in r.getMessage()]
        assert not given_up, given_up[:5]

    return check


def fuzz(
    *strategies: Any, share: float = 1.0
) -> Callable[[Callable[..., None]], Callable[[], None]]:
    return lambda fn: hypothesis.settings(
        max_examples=max(1, int(EXAMPLES * share)),
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )(hypothesis.given(*strategies)(fn))


async def fuzzing(
    caplog: pytest.LogCaptureFixture, body: Callable[[Fuzzer], Callable[[], None]], **kw: Any
) -> Fuzzer:
    check_logs = no_5xx_or_crash(caplog)
    settings: dict[str, Any] = {"concurrency": 4, "max_body_bytes": 256 * 1024, **kw}
    async with running_app(Echo, transport=RecordingTransport(), **settings) as (app, client):
        fuzzer = Fuzzer(client)
        await trio.to_thread.run_sync(body(fuzzer))
        with trio.fail_after(30):
            # Every accepted prediction ends and its webhooks settle (the recording
            # transport answers at once): nothing was left stuck by what it was sent.
            while app.runner.active_count:
                await trio.sleep(0.01)
            await app.webhooks.wait_idle()
        health = await (await client.get("/health-check")).get_json()
        assert health["status"] == "READY"
        ok = await client.post("/predictions", json={"input": {"text": "still here"}})
        assert (await ok.get_json())["output"]["text"] == "still here"
    check_logs()
    print(f"answers: {dict(sorted(fuzzer.statuses.items()))}")
    return fuzzer


# -- the tests -----------------------------------------------------------------------------


async def test_fuzz_prediction_bodies(caplog: pytest.LogCaptureFixture) -> None:
    def run(f: Fuzzer) -> Callable[[], None]:
        @fuzz(bodies, st.sampled_from(["POST", "PUT"]), ids, prefer)
        def one(body: Any, method: str, path_id: Any, prefer: str | None) -> None:
            path = "/predictions"
            if method == "PUT":
                path += "/" + in_path(str(path_id))
            status, answer = f.send(method, path, encode(body), prefer=prefer)
            if status in (200, 202):
                assert isinstance(body, dict)
                if method == "PUT":
                    assert answer["id"] == str(path_id)  # created now, or earlier: idempotent
                elif "id" not in body:
                    assert answer["input"] == body.get("input", {})
                if status == 200:
                    assert answer["status"] in {"succeeded", "failed", "canceled"}

        return one

    fuzzer = await fuzzing(caplog, run)
    # The generators reach both sides of the contract, not only the error paths.
    assert fuzzer.statuses.get(200, 0) + fuzzer.statuses.get(202, 0) > 0
    assert fuzzer.statuses.get(422, 0) > 0 and fuzzer.statuses.get(400, 0) > 0


async def test_fuzz_damaged_bytes_and_content_types(caplog: pytest.LogCaptureFixture) -> None:
    def run(f: Fuzzer) -> Callable[[], None]:
        @fuzz(
            st.one_of(bodies.map(encode), st.binary(max_size=200)),
            st.integers(min_value=0),
            st.binary(min_size=0, max_size=6)
            | st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\\u", b'"']),
            st.sampled_from([*CONTENT_TYPES, None]),
        )
        def one(data: bytes, cut: int, junk: bytes, content_type: str | None) -> None:
            f.send("POST", "/predictions", mangle(data, cut, junk), content_type)

        return one

    fuzzer = await fuzzing(caplog, run)
    assert fuzzer.statuses.get(400, 0) > 0


async def test_fuzz_ids_in_paths(caplog: pytest.LogCaptureFixture) -> None:
    """Any text as an id in the PUT and cancel paths: created, found, 404 or 422."""

    def run(f: Fuzzer) -> Callable[[], None]:
        @fuzz(st.text(max_size=140) | st.sampled_from(METACHARACTERS), st.booleans(), share=0.5)
        def one(text: str, cancel: bool) -> None:
            quoted = in_path(text, safe="/" if cancel else "")
            path = f"/predictions/{quoted}/cancel" if cancel else f"/predictions/{quoted}"
            status, answer = f.send("POST" if cancel else "PUT", path, b"{}")
            if status in (200, 202):
                assert answer["id"] == text
            elif cancel:
                assert status in (404, 405, 422)

        return one

    await fuzzing(caplog, run)


# -- one-off monsters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"input": {"extra": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}}",
        b'{"input": {"tags": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        b"[" * 100_000,
        b'{"input": {"n": 1' + b"0" * 100_000 + b"}}",
        b'{"input": {"ratio": 1e999999}}',
        b'{"input": {"ratio": -Infinity}}',
        b'{"input": {"text": "' + b"\\ud800" * 1000 + b'"}}',
        b'{"input": {"text": "\xed\xa0\x80"}}',
        b"\xef\xbb\xbf{}",
        b"\x00" * 1000,
        b"null",
        b'"a string"',
        b"42",
        b"[]",
    ],
    ids=lambda d: f"{d[:24]!r}..{len(d)}",
)
async def test_monsters_are_4xx_and_harmless(data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    check_logs = no_5xx_or_crash(caplog)
    async with running_app(Echo, transport=RecordingTransport()) as (_, client):
        response = await client.post("/predictions", data=data)
        assert 400 <= response.status_code < 500
        assert set(await response.get_json()) == {"detail"}
        health = await (await client.get("/health-check")).get_json()
        assert health["status"] == "READY"
    check_logs()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/predictions//x"),
        ("PUT", "/predictions/%2Fx"),
        ("PUT", "/predictions/x/"),
        ("POST", "/predictions//x/cancel"),
        ("POST", "/predictions/%2F/cancel"),
    ],
)
async def test_odd_paths_are_json_4xx_never_a_redirect(method: str, path: str) -> None:
    """Found by the fuzzer: "/predictions//x" was an HTML 308 to "/predictions/x", which
    a client following redirects would take as creating the prediction "x"."""
    async with running_app(Echo, transport=RecordingTransport()) as (app, client):
        response = await client.open(path, method=method, json={})
        assert 400 <= response.status_code < 500
        assert set(await response.get_json()) == {"detail"}
        assert app.runner.get("x") is None


@pytest.mark.parametrize("url", ["http://☃.net/", "http://xn--n3h.net/hook"])
async def test_webhook_url_the_client_cannot_send_to_is_422(url: str) -> None:
    """Found by fuzzing: pydantic took these hosts, httpx refuses them (IDNA 2008): the
    prediction was accepted and its webhooks silently never sent."""
    async with running_app(Echo, transport=RecordingTransport()) as (_, client):
        response = await client.post("/predictions", json={"webhook": url})
        assert response.status_code == 422
        detail = (await response.get_json())["detail"]
        assert [e["loc"] for e in detail] == [["body", "webhook"]]


async def test_duplicate_keys_the_last_one_wins_as_in_every_json_parser() -> None:
    async with running_app(Echo, transport=RecordingTransport()) as (_, client):
        response = await client.post("/predictions", data=b'{"id": "a", "id": "b"}')
        assert (await response.get_json())["id"] == "b"


async def test_deep_but_legal_nesting_is_echoed_in_answer_and_webhooks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The deepest input the parser takes goes through the model, the answer and the
    webhooks without a RecursionError anywhere."""
    check_logs = no_5xx_or_crash(caplog)
    transport = RecordingTransport()
    deepest: Any = None
    async with running_app(Echo, transport=transport) as (app, client):
        for depth in range(50, 5000, 50):
            nested = '{"a": ' * depth + "1" + "}" * depth
            data = f'{{"input": {{"extra": {nested}}}, "webhook": "http://r.test/"}}'.encode()
            response = await client.post("/predictions", data=data)
            if response.status_code != 200:
                assert response.status_code == 400
                break
            deepest = (depth, await response.get_json())
        with trio.fail_after(10):
            await app.webhooks.wait_idle()
    assert deepest is not None
    depth, answer = deepest
    assert answer["status"] == "succeeded"
    node = answer["output"]["extra"]
    for _ in range(depth - 1):
        node = node["a"]
    assert node == {"a": 1}
    assert transport.bodies[-1]["output"] == answer["output"]
    check_logs()


async def test_huge_numbers_survive_the_round_trip(caplog: pytest.LogCaptureFixture) -> None:
    check_logs = no_5xx_or_crash(caplog)
    big = 10**300
    async with running_app(Echo, transport=RecordingTransport()) as (_, client):
        response = await client.post(
            "/predictions", json={"input": {"extra": {"big": big, "tiny": 5e-324}}}
        )
        assert response.status_code == 200
        answer = json.loads(await response.get_data(as_text=False))
        assert answer["output"]["extra"] == {"big": big, "tiny": 5e-324}
        # a float input too big for a float: 422, not an infinite ratio
        response = await client.post("/predictions", json={"input": {"ratio": big * 10**20}})
        assert response.status_code in (200, 422)
        if response.status_code == 200:
            assert math.isfinite((await response.get_json())["output"]["ratio"])
    check_logs()


async def test_huge_bodies_over_a_real_server(caplog: pytest.LogCaptureFixture) -> None:
    """16 MiB is the default limit: a bigger body is 413 (and the connection closed),
    one just below it is served."""
    from service import create_app

    check_logs = no_5xx_or_crash(caplog)
    app = create_app(Config(), predictor=Echo)
    async with real_server(app) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
        too_big = b'{"input": {"text": "' + b"x" * (17 * 1024 * 1024) + b'"}}'
        r = await http.post("/predictions", content=too_big)
        assert r.status_code == 413 and set(r.json()) == {"detail"}
        text = "y" * (15 * 1024 * 1024)
        r = await http.post("/predictions", json={"input": {"text": text}})
        assert r.status_code == 200 and r.json()["output"]["text"] == text
        r = await http.get("/health-check")
        assert r.json()["status"] == "READY"
    check_logs()


# -- hostile receivers: any answer at all ---------------------------------------------------

retry_after_values = st.one_of(
    st.text(max_size=40),
    st.builds(
        "{} {} {} {}:{}:{} {}".format,
        st.integers(-5, 40),
        st.sampled_from(["Jan", "Dec", "Xyz", ""]),
        st.integers(-(10**6), 10**12),
        st.integers(-1, 99),
        st.integers(-1, 99),
        st.integers(-1, 99),
        st.sampled_from(["GMT", "+0000", "-9999", "+2500", "", "UT"]),
    ),
    st.floats().map(str),
    st.integers().map(str),
)


@hypothesis.settings(max_examples=EXAMPLES // 2, deadline=None, database=None)
@hypothesis.given(retry_after_values)
def test_retry_after_of_any_shape_is_none_or_a_finite_delay(value: str) -> None:
    """Found a bug: "0 JAN 2147483648 0:0" raised OverflowError (see test_faults.py)."""
    response = httpx.Response(
        503, headers=[(b"retry-after", value.encode("utf-8", "surrogatepass"))]
    )
    delay = _retry_after(response, now=1.7e9)
    assert delay is None or (math.isfinite(delay) and delay >= 0)


answers = st.lists(
    st.tuples(
        st.integers(min_value=200, max_value=599),
        st.none() | retry_after_values,
        st.sampled_from([b"", b"ok", b"x" * 100_000, b"\xff\xfe", b'{"detail": NaN}']),
    ),
    min_size=1,
    max_size=4,
)


async def test_terminal_delivery_survives_any_sequence_of_answers() -> None:
    """Whatever a receiver answers (any status, any Retry-After, any body), the terminal
    delivery ends, delivered or given up, without raising: no answer kills the task."""
    script: list[tuple[int, str | None, bytes]] = []
    seen = 0

    async def respond(request: Any, n: int) -> httpx.Response:
        nonlocal seen
        seen += 1
        status, retry_after, body = script[min(n, len(script) - 1)]
        # bytes, as they come off the wire: any text a receiver could send
        raw = None if retry_after is None else retry_after.encode("utf-8", "surrogatepass")
        headers = [] if raw is None else [(b"retry-after", raw)]
        return httpx.Response(status, headers=headers, content=body)

    config = Config(
        webhook_backoff_initial=0.001, webhook_backoff_max=0.002, webhook_retry_budget=0.05
    )
    transport = RecordingTransport(respond)
    async with httpx.AsyncClient(transport=transport) as client:
        sender = WebhookSender(client, config, "test")

        @fuzz(answers, share=0.2)
        def one(sequence: list[tuple[int, str | None, bytes]]) -> None:
            nonlocal seen
            script[:] = sequence
            seen = 0
            transport.attempts = 0
            delivered = trio.from_thread.run(
                sender._deliver_terminal, "http://r.test/", b"{}", "p1"
            )
            first = sequence[0][0]
            if 200 <= first < 300:
                assert delivered and seen == 1
            elif first < 500 and first not in (408, 429):
                assert not delivered and seen == 1  # final: never retried
            assert seen >= 1

        await trio.to_thread.run_sync(one)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/", {"GET", "HEAD", "OPTIONS"}),
        ("DELETE", "/predictions", {"POST", "OPTIONS"}),
        ("GET", "/predictions/p1/cancel", {"POST", "OPTIONS"}),
        ("PATCH", "/shutdown", {"POST", "OPTIONS"}),
    ],
)
async def test_405_says_which_methods_are_allowed(
    method: str, path: str, allowed: set[str]
) -> None:
    """Found by schemathesis (run by hand against /openapi.json, see the README): a 405
    had no ``Allow`` header, which RFC 9110 requires."""
    async with running_app(Echo, transport=RecordingTransport()) as (_, client):
        response = await client.open(path, method=method)
        assert response.status_code == 405
        assert set(await response.get_json()) == {"detail"}
        assert {m.strip() for m in response.headers["Allow"].split(",")} >= allowed
