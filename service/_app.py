"""The HTTP layer: routes parse, call into the prediction runner, and render.

:func:`create_app` returns a Quart-Trio app that owns everything of one service: its
config, its predictor, its runner and its webhook client. There is no other global state.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pydantic
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from . import _logs
from ._config import Config
from ._openapi import openapi_document
from ._predictor import LoadedPredictor, load_predictor, wrap_predictor
from ._runner import Busy, NotReady, PredictionRunner
from ._schema import ID_PATTERN, PredictionRequest, parse_json, to_json
from ._version import __version__
from ._webhooks import WebhookSender

__all__ = ["PredictionApp", "create_app"]


class PredictionApp(QuartTrio):
    """The Quart-Trio app of one service, with the runner it routes to."""

    config_: Config
    runner: PredictionRunner
    webhooks: WebhookSender
    webhook_client: httpx.AsyncClient
    #: Set once a shutdown has finished draining; the server then stops.
    drained: trio.Event
    _shutdown_started: bool

    def request_shutdown(self) -> None:
        """Refuse new predictions now and drain the running ones in the background."""
        if self._shutdown_started:
            return
        self._shutdown_started = True
        self.runner.shutting_down = True

        async def drain() -> None:
            try:
                await self.runner.shutdown()
            finally:
                self.drained.set()

        self.nursery.start_soon(drain)

    async def asgi_app(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Send the last chunk of each response shielded from cancellation.

        Quart-Trio cancels a request's scope as soon as the response is complete, while
        Hypercorn is still inside that send, restarting the connection's keep-alive idle
        timer; the restart is cancelled, so an idle keep-alive connection is never closed:
        not after ``keep_alive_timeout``, and not at shutdown, which then waits the whole
        ``graceful_timeout`` for it. Hypercorn shields its socket writes anyway, so this
        only lets its bookkeeping finish. (Here, not in the CLI, so that any server of
        this app gets it.)"""
        if scope["type"] != "http":
            await super().asgi_app(scope, receive, send)
            return

        async def send_last_shielded(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await super().asgi_app(scope, receive, send_last_shielded)

    async def make_default_options_response(self) -> Response:
        """``OPTIONS``: an empty ``200`` with the ``Allow`` header, not an empty HTML page."""
        response = await super().make_default_options_response()
        del response.headers["Content-Type"]
        return response


class _ClientError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail


_ID = re.compile(ID_PATTERN)


def _json(body: Any, status: int = 200) -> Response:
    return Response(to_json(body), status=status, content_type="application/json")


def _errors(exc: pydantic.ValidationError, prefix: tuple[str | int, ...]) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def create_app(
    config: Config | None = None,
    *,
    predictor: LoadedPredictor | object | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> PredictionApp:
    """Build the service.

    ``predictor`` may be a loaded predictor, or a class or function to wrap (tests pass
    one in); without it ``config.predictor`` is loaded, or the demo model.
    ``webhook_transport`` replaces the network under the webhook client (tests).
    Raises :class:`service.PredictorLoadError` when the predictor cannot be loaded.
    """
    config = config or Config()
    if predictor is None:
        predictor = load_predictor(config.predictor or "service._demo:DemoPredictor")
    loaded = predictor if isinstance(predictor, LoadedPredictor) else wrap_predictor(predictor)

    app = PredictionApp(__name__)
    # "PUT /predictions//x" is a JSON 404, not an HTML 308 redirect to the id "x".
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = None
    app.config_ = config
    app.drained = trio.Event()
    app._shutdown_started = False
    timeout = config.webhook_timeout
    app.webhook_client = httpx.AsyncClient(
        transport=webhook_transport,
        timeout=httpx.Timeout(timeout, pool=max(timeout, 60.0)),
        limits=httpx.Limits(
            max_connections=config.webhook_max_connections,
            max_keepalive_connections=config.webhook_max_connections,
        ),
        follow_redirects=False,
    )
    app.webhooks = WebhookSender(app.webhook_client, config, __version__)
    app.runner = PredictionRunner(loaded, config, app.webhooks)
    runner = app.runner
    openapi = openapi_document(loaded, __version__)

    @app.before_serving
    async def start() -> None:
        _logs.install()
        await app.nursery.start(runner.run)

    @app.after_serving
    async def stop() -> None:
        await app.webhook_client.aclose()
        _logs.uninstall()

    @app.before_request
    async def read_the_whole_body() -> None:
        # Answering before the request body is read (a 404, a 405, a cancel sent with a
        # body) can leave Hypercorn's keep-alive connection stuck: the client's next
        # request on it hangs. So every body is read first, within MAX_CONTENT_LENGTH.
        await request.get_data(as_text=False)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        response = _json({"detail": exc.description or exc.name}, exc.code or 500)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # RFC 9110: required
        if exc.code == 413:
            # The rest of the body was never read: the connection cannot carry another
            # request reliably (a keep-alive client's next request could hang), so close it.
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(_ClientError)
    async def client_error(exc: _ClientError) -> Response:
        return _json({"detail": exc.detail}, exc.status)

    async def parse_request(path_id: str | None) -> tuple[PredictionRequest, dict[str, Any]]:
        raw = await request.get_data(as_text=False)
        if raw.strip():
            try:
                # Strict JSON: no NaN/Infinity (they could not be echoed back as JSON), no
                # lone surrogates, and a nesting limit instead of a RecursionError.
                body = parse_json(raw)
            except ValueError as exc:
                raise _ClientError(400, f"request body is not valid JSON: {exc}") from None
        else:
            body = {}
        if not isinstance(body, dict):
            raise _ClientError(
                422, [{"loc": ["body"], "msg": "must be a JSON object", "type": "dict_type"}]
            )
        errors: list[dict[str, Any]] = []
        if path_id is not None:
            if not _ID.fullmatch(path_id):
                raise _ClientError(
                    422,
                    [
                        {
                            "loc": ["path", "prediction_id"],
                            "msg": "must be 1 to 128 characters of A-Z a-z 0-9 _ . -",
                            "type": "string_pattern_mismatch",
                        }
                    ],
                )
            body_id = body.get("id")
            if body_id is not None and body_id != path_id:
                errors.append(
                    {
                        "loc": ["body", "id"],
                        "msg": "does not match the id in the path",
                        "type": "id_mismatch",
                    }
                )
            body = {**body, "id": path_id}
        try:
            req = PredictionRequest.model_validate(body)
        except pydantic.ValidationError as exc:
            errors.extend(_errors(exc, ("body",)))
            req = None
        raw_input = body.get("input", {})
        inputs: dict[str, Any] = {}
        if isinstance(raw_input, dict):
            try:
                validated = loaded.inputs.model_validate(raw_input)
            except pydantic.ValidationError as exc:
                errors.extend(_errors(exc, ("body", "input")))
            else:
                inputs = {name: getattr(validated, name) for name in type(validated).model_fields}
        if errors or req is None:
            raise _ClientError(422, errors)
        return req, inputs

    async def create(path_id: str | None) -> Response:
        req, inputs = await parse_request(path_id)
        try:
            p = runner.create(req, inputs)
        except NotReady as exc:
            raise _ClientError(503, str(exc)) from None
        except Busy as exc:
            raise _ClientError(409, str(exc)) from None
        # RFC 7240: preferences are comma-separated and may carry parameters after ';'
        # ("respond-async; wait=10"); several Prefer headers count as one list.
        prefer = {
            token.split(";")[0].strip().lower()
            for header in request.headers.getlist("prefer")
            for token in header.split(",")
        }
        if "respond-async" in prefer:
            return _json(p.snapshot(), 202)
        await p.done.wait()
        return _json(p.snapshot(), 200)

    @app.get("/")
    async def index() -> Response:
        return _json(
            {
                "version": __version__,
                "docs_url": None,
                "openapi_url": "/openapi.json",
                "healthcheck_url": "/health-check",
                "predictions_url": "/predictions",
                "predictions_idempotent_url": "/predictions/{prediction_id}",
                "predictions_cancel_url": "/predictions/{prediction_id}/cancel",
                "shutdown_url": "/shutdown",
            }
        )

    @app.get("/health-check")
    async def health() -> Response:
        return _json(
            {
                "status": runner.health.value,
                "setup": runner.setup_info(),
                "concurrency": {"max": config.concurrency, "current": runner.active_count},
                "abandoned_threads": runner.abandoned_threads,
                "version": __version__,
            }
        )

    @app.get("/openapi.json")
    async def openapi_json() -> Response:
        return _json(openapi)

    @app.post("/predictions")
    async def post_prediction() -> Response:
        return await create(None)

    # `path:` so that an id with a '/' in it (or its %2F) is answered 422, not 404.
    @app.put("/predictions/<path:prediction_id>")
    async def put_prediction(prediction_id: str) -> Response:
        return await create(prediction_id)

    @app.post("/predictions/<path:prediction_id>/cancel")
    async def cancel_prediction(prediction_id: str) -> Response:
        p = runner.cancel(prediction_id)
        if p is None:
            raise _ClientError(404, f"no prediction with id {prediction_id!r}")
        return _json(p.snapshot())

    @app.post("/shutdown")
    async def shutdown() -> Response:
        app.request_shutdown()
        return _json({"detail": "shutting down"})

    return app
