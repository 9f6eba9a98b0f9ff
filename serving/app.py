"""The scoring API (FastAPI): the scoring core's answer per client, health, model info, reload, metrics.

Nothing happens at import. :func:`create_app` builds the app; its lifespan starts loading the
champions and the feature table in a worker thread, so ``/health/live`` answers at once and
``/health/ready`` says 503 until the load is done. Routes get the current :class:`Scorer` through a
dependency; ``/admin/reload`` builds a new one beside it, checks it on a canary batch and swaps
one reference, so requests in flight keep the scorer they started with and none fails.

Batch scoring (POST /v1/scores) runs in one dedicated thread, so the event loop keeps answering
health checks while it works. A single client (GET /v1/clients/{id}/score) costs
a few hundred µs at most through the core's single-row path, less than a threadpool hand-off, so
it runs on the event loop, between which health checks interleave, and is answered by
:class:`SingleClientFastPath` in front of the middleware stack. Both routes return pre-encoded
JSON (orjson) instead of letting FastAPI validate the answer against the response model again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
from fastapi import Depends, FastAPI, HTTPException, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field

from serving.config import ApiSettings, ScoreParams
from serving.core import Scorer, prepare_snapshot, read_feature_table, to_records

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Loader = Callable[[], Scorer]


# ------------------------------------------------------------------------------------------------
# Response and request models (they make the OpenAPI document)
# ------------------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every error answer: ``detail`` says what went wrong."""

    detail: str


class ClientScore(BaseModel):
    """The scoring core's answer for one client (no personal data beyond the client id)."""

    client_id: str
    cutoff_at: dt.datetime = Field(description="scoring cutoff (UTC): features use data before it")
    state: str = Field(description="new, active, lapsed_90, lapsed_180, lapsed_360, lost or no_order")
    model: Literal["churn", "winback"] | None = Field(description="which model applies (None: lost/no order)")
    churn_probability: float | None = Field(description="P(no completed order within 100 days), new/active")
    winback_probability: float | None = Field(description="P(a completed order within 100 days), lapsed")
    value: float = Field(description="lifetime value over the horizon, company currency")
    value_class: Literal["A", "B", "C"]
    campaign: Literal["prevention", "winback", "none"]
    priority: float | None = Field(description="probability x value (- offer cost for win-back)")
    offer: str | None
    offer_cost: float | None
    excluded_reason: str | None = Field(description="why the client is not on a list (None when listed)")
    tier: str | None = Field(description="win-back tier (lapsed_90/180/360)")
    flags: list[str] = Field(description="returned_client, new_client, open_severe_complaint")
    avoid_manager_id: str | None = Field(description="win-back: the manager who had the client at the loss")
    suggested_manager_id: str | None = Field(
        description="win-back: least-loaded other manager of the segment"
    )
    reasons: list[str] = Field(description="top reasons in words, strongest first")
    model_version: str | None


class ScoreRequest(BaseModel):
    """Client ids to score (at most COMEBACK_MAX_CLIENTS_PER_REQUEST, default 1000)."""

    model_config = ConfigDict(extra="forbid")

    client_ids: list[str] = Field(min_length=1, description="CRM client ids")


class ScoresResponse(BaseModel):
    cutoff_at: dt.datetime
    model_versions: dict[str, str]
    scores: list[ClientScore]
    unknown_client_ids: list[str] = Field(description="requested ids not in the feature table")


class ModelSummary(BaseModel):
    name: str
    version: str
    metrics: dict[str, float]


class ModelInfo(BaseModel):
    cutoff_at: dt.datetime
    clients: int
    loaded_at: dt.datetime
    features: str
    models: dict[str, ModelSummary]


class Health(BaseModel):
    status: str
    detail: str | None = None
    model_versions: dict[str, str] | None = None


class ReloadResult(BaseModel):
    reloaded: bool
    reason: str | None = None
    previous: dict[str, str] | None = None
    current: dict[str, str] | None = None
    cutoff_at: dt.datetime | None = None


# ------------------------------------------------------------------------------------------------
# Serving state, loading and reload
# ------------------------------------------------------------------------------------------------


@dataclass
class ServingState:
    """What the routes serve: one Scorer reference (swapped whole on reload) and load status."""

    scorer: Scorer | None = None
    loaded_at: dt.datetime | None = None
    error: str | None = None
    reload_lock: threading.Lock = field(default_factory=threading.Lock)


def registry_loader(settings: ApiSettings, params: ScoreParams) -> Loader:
    """A loader of the champions (MLflow registry, alias from settings) and the latest feature table."""

    def load() -> Scorer:
        from models.scorer import load_model

        churn = load_model(
            "churn",
            tracking_uri=settings.tracking_uri,
            alias=settings.model_alias,
            num_threads=settings.num_threads,
        )
        winback = load_model(
            "winback",
            tracking_uri=settings.tracking_uri,
            alias=settings.model_alias,
            num_threads=settings.num_threads,
        )
        frame = read_feature_table(settings.features, settings.cutoff)
        snapshot = prepare_snapshot(frame, params, source=str(settings.features))
        return Scorer(snapshot, churn, winback, params)

    return load


def check_canary(scorer: Scorer, rows: int) -> None:
    """Score a small batch with reasons; raise ValueError saying what is wrong with the new scorer."""
    snap = scorer.snapshot
    if snap.n_clients == 0:
        raise ValueError("the feature table has no clients at the cutoff")
    step = max(1, snap.n_clients // rows)
    sample = np.arange(0, snap.n_clients, step, dtype=np.int64)[:rows]
    scored = scorer.score(sample, reasons="all")
    kind = snap.plan.model_kind[sample]
    p = np.where(kind == "churn", scored.churn_probability, scored.winback_probability)
    has_model = kind != ""
    if not np.all(np.isfinite(p[has_model])):
        raise ValueError("canary batch: a model returned a missing or infinite probability")
    if np.any((p[has_model] < 0) | (p[has_model] > 1)):
        raise ValueError("canary batch: a probability outside [0, 1]")
    records = to_records(scorer, scored)
    # The single-client route has its own fast path: it must give the batch's answers.
    for row, record in zip(sample.tolist(), records, strict=True):
        if scorer.score_one(row) != record:
            raise ValueError(
                f"canary batch: client {record['client_id']!r} gets a different answer alone than in a batch"
            )


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "comeback_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "comeback_request_seconds",
            "request latency, seconds",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.model = Gauge(
            "comeback_model_info",
            "champion version being served (1)",
            ["kind", "version"],
            registry=self.registry,
        )
        self.reloads = Counter("comeback_reloads", "model reloads", ["outcome"], registry=self.registry)
        self.clients_scored = Counter("comeback_clients_scored", "clients scored", registry=self.registry)
        # labelled children per (method, route, status): prometheus_client's labels() checks and
        # locks on every call, which costs more than the increment itself
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and observe its latency (``route``: the template, never a client id)."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(method=method, route=route, status=str(status)),
                self.latency.labels(route=route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def set_versions(self, versions: dict[str, str]) -> None:
        self.model.clear()
        for kind, version in versions.items():
            self.model.labels(kind=kind, version=version).set(1)


# ------------------------------------------------------------------------------------------------
# Pure ASGI middleware: body size limit (also for chunked bodies) and request metrics
# ------------------------------------------------------------------------------------------------


async def _send_whole(
    send: Send,
    status: int,
    body: bytes,
    length: int | None = None,
    content_type: bytes = b"application/json",
) -> None:
    """Send a whole response; ``length`` is the Content-Length when ``body`` is left out (HEAD)."""
    length = len(body) if length is None else length
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(length).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Answer 413 when a request body exceeds ``max_bytes``, counting the bytes actually received.

    The declared Content-Length is checked first; chunked bodies are read (up to the limit) before
    the app sees them, so the app never parses an oversized body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = b'{"detail":"request body larger than ' + str(self.max_bytes).encode() + b' bytes"}'
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                has_body = True
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await _send_whole(send, 413, too_large)
                    return
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:
            # HTTP/1.1: a request with neither Content-Length nor Transfer-Encoding has no body
            # (RFC 9112, 6.3), so there is nothing to count (most GETs).
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # Client went away before the body was complete.
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _send_whole(send, 413, too_large)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestMetrics:
    """Count requests and time them per route template (client ids never become labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.record_request(scope["method"], path, status, time.perf_counter() - started)


SINGLE_CLIENT_ROUTE = "/v1/clients/{client_id}/score"
_SINGLE_PREFIX, _SINGLE_SUFFIX = "/v1/clients/", "/score"


class SingleClientFastPath:
    """GET /v1/clients/{client_id}/score answered in front of the whole middleware stack.

    Scoring one client through the core's single-row path costs about 95 µs of CPU; the layers
    around a route (Starlette's error and exception middlewares, FastAPI's body limit, telemetry and
    exit-stack middlewares, ours, routing, dependency solving) cost about as much again, each
    wrapping ``send`` once more. This outermost layer answers that one route itself, with what the
    layers it skips would do for it: the key check and the answer come from ``answer(client_id,
    key)``, the function the FastAPI route of the same path also calls (so both give the same
    statuses and bytes: tests/api/test_fast_paths.py), the request is counted and timed in
    :class:`Metrics` under the route template, and an unexpected error becomes a 500.

    Anything else goes down the stack unchanged: other paths and methods, a request that
    declares a body (the body limit must see it), and an app mounted under a root path. The
    FastAPI route stays registered and documents the operation in OpenAPI.
    """

    def __init__(
        self, app: ASGIApp, answer: Callable[[str, str | None], tuple[int, bytes]], metrics: Metrics
    ) -> None:
        self.app = app
        self.answer = answer
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client_id = self._client_id(scope)
        if client_id is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        key: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-length" or name == b"transfer-encoding":
                await self.app(scope, receive, send)  # a body: the body limit decides
                return
            if name == b"x-api-key" and key is None:
                key = value.decode("latin-1")  # as Starlette decodes headers for APIKeyHeader
        try:
            status, body = self.answer(client_id, key)
        except Exception:
            log.exception("GET %s failed", SINGLE_CLIENT_ROUTE)
            status, body = 500, b"Internal Server Error"  # as Starlette's ServerErrorMiddleware
            await _send_whole(send, status, body, content_type=b"text/plain; charset=utf-8")
        else:
            await _send_whole(send, status, b"" if scope["method"] == "HEAD" else body, len(body))
        elapsed = time.perf_counter() - started
        self.metrics.record_request(scope["method"], SINGLE_CLIENT_ROUTE, status, elapsed)

    @staticmethod
    def _client_id(scope: Scope) -> str | None:
        """The client id when ``scope`` is a GET or HEAD of the single-client route, else None."""
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if not (path.startswith(_SINGLE_PREFIX) and path.endswith(_SINGLE_SUFFIX)):
            return None
        client_id = path[len(_SINGLE_PREFIX) : -len(_SINGLE_SUFFIX)]
        # Starlette's {client_id} (a str convertor) is one non-empty path segment
        return client_id if client_id and "/" not in client_id else None


class ScoringApi(FastAPI):
    """FastAPI with :class:`SingleClientFastPath` around its middleware stack (when set)."""

    fast_path: tuple[Callable[[str, str | None], tuple[int, bytes]], Metrics] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack: ASGIApp = super().build_middleware_stack()
        if self.fast_path is None:
            return stack
        return SingleClientFastPath(stack, *self.fast_path)


# ------------------------------------------------------------------------------------------------
# The app
# ------------------------------------------------------------------------------------------------

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (COMEBACK_API_KEYS)")
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or invalid X-API-Key"},
    413: {"model": ErrorBody, "description": "request body too large"},
    503: {"model": ErrorBody, "description": "models or features not loaded yet"},
}


def _key_matches(given: str | None, keys: tuple[bytes, ...]) -> bool:
    if not given:
        return False
    candidate = given.encode()
    ok = False
    for key in keys:  # compare with every key, in constant time each, without short-circuit
        ok |= hmac.compare_digest(candidate, key)
    return ok


def create_app(
    settings: ApiSettings | None = None,
    params: ScoreParams | None = None,
    *,
    loader: Loader | None = None,
    fast_single_client: bool = True,
) -> FastAPI:
    """Build the scoring API. ``loader`` builds a Scorer (default: registry champions + feature table).

    ``fast_single_client=False`` leaves GET /v1/clients/{id}/score to the FastAPI route alone
    (without :class:`SingleClientFastPath`); the tests compare the two.
    """
    settings = settings or ApiSettings()
    params = params or ScoreParams()
    load = loader or registry_loader(settings, params)
    state = ServingState()
    metrics = Metrics()
    api_keys = settings.keys(admin=False)
    admin_keys = settings.keys(admin=True)
    if not api_keys:
        log.warning("no API keys configured (COMEBACK_API_KEYS): every keyed route answers 401")

    def initial_load() -> None:
        try:
            scorer = load()
            check_canary(scorer, settings.canary_rows)
        except Exception as e:
            state.error = f"{type(e).__name__}: {e}"
            log.error("could not load models and features: %s", state.error)
            return
        state.scorer, state.loaded_at, state.error = scorer, dt.datetime.now(dt.UTC), None
        metrics.set_versions(scorer.model_versions)
        log.info("serving %s at cutoff %s", scorer.model_versions, scorer.snapshot.cutoff_at)

    # Batches are scored in one dedicated thread, off the event loop (health checks keep
    # answering) and one at a time: batch scoring is mostly Python holding the GIL, so two batches
    # in two threadpool threads only took turns at it, paying for each switch.
    batch_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="comeback-batch")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().run_in_executor(None, initial_load)
        yield
        if not task.done():
            task.cancel()
        batch_thread.shutdown(wait=False, cancel_futures=True)

    app = ScoringApi(
        title="comeback scoring API",
        version="1",
        description="Churn risk and win-back likelihood per client, with value, campaign, offer and reasons.",
        lifespan=lifespan,
        **_without_opentelemetry(),
    )
    app.state.serving = state
    app.state.metrics = metrics

    # Dependencies are async on purpose: they are trivial, and a sync dependency would cost a
    # threadpool hop per request on top of the sync route's own.
    async def require_admin(key: str | None = Security(API_KEY)) -> None:
        if not _key_matches(key, api_keys):
            raise HTTPException(401, "missing or invalid X-API-Key")
        if not _key_matches(key, admin_keys):
            raise HTTPException(403, "this route needs an admin key (COMEBACK_ADMIN_KEYS)")

    async def keyed_scorer(key: str | None = Security(API_KEY)) -> Scorer:
        """The current Scorer for a request with a valid key (401 first, then 503 while loading).

        One dependency for both checks: each dependency FastAPI solves costs tens of µs per
        request, a sizeable share of a single-client answer.
        """
        if not _key_matches(key, api_keys):
            raise HTTPException(401, "missing or invalid X-API-Key")
        scorer = state.scorer
        if scorer is None:
            raise HTTPException(
                503, "models and features are not loaded yet" + (f": {state.error}" if state.error else "")
            )
        return scorer

    @app.get("/health/live", response_model=Health, tags=["health"])
    async def live() -> Health:
        """The process is up (no model needed)."""
        return Health(status="live")

    @app.get(
        "/health/ready",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health, "description": "not ready: models or features not loaded"}},
    )
    async def ready() -> Any:
        """Models and features are loaded and checked."""
        scorer = state.scorer
        if scorer is None:
            body = Health(status="loading" if state.error is None else "failed", detail=state.error)
            return JSONResponse(body.model_dump(), status_code=503)
        return Health(status="ready", model_versions=scorer.model_versions)

    @app.get(
        SINGLE_CLIENT_ROUTE,
        response_model=ClientScore,
        tags=["scores"],
        responses={**ERRORS, 404: {"model": ErrorBody, "description": "unknown client"}},
    )
    async def score_client(client_id: str, key: str | None = Security(API_KEY)) -> Any:
        """The scoring core's answer for one client at the scoring cutoff.

        Async on purpose: one client costs well under a millisecond of CPU on the native booster,
        less than a hand-off to the threadpool and back, so it runs on the event loop; health checks
        still interleave between requests. Batches (POST /v1/scores) stay in the threadpool.
        """
        status, body = single_client_answer(client_id, key)
        return Response(content=body, status_code=status, media_type="application/json")

    def single_client_answer(client_id: str, key: str | None) -> tuple[int, bytes]:
        """Status and JSON body of GET /v1/clients/{client_id}/score (both routes below use it)."""
        if not _key_matches(key, api_keys):
            return 401, _detail("missing or invalid X-API-Key")
        scorer = state.scorer
        if scorer is None:
            return 503, _detail(
                "models and features are not loaded yet" + (f": {state.error}" if state.error else "")
            )
        row = scorer.snapshot.row_of.get(client_id)
        if row is None:
            cutoff = scorer.snapshot.cutoff_at.date()
            return 404, _detail(f"client {client_id!r} is not in the feature table at cutoff {cutoff}")
        answer = scorer.score_one(row)
        metrics.clients_scored.inc()
        return 200, orjson.dumps(answer)

    # The same operation in front of the middleware stack; the FastAPI route above documents it
    # in OpenAPI and gives the same answers (see SingleClientFastPath).
    if fast_single_client:
        app.fast_path = (single_client_answer, metrics)

    @app.post(
        "/v1/scores",
        response_model=ScoresResponse,
        tags=["scores"],
        responses=ERRORS,
    )
    async def score_clients(body: ScoreRequest, scorer: Scorer = Depends(keyed_scorer)) -> Any:
        """Scores for up to COMEBACK_MAX_CLIENTS_PER_REQUEST clients; unknown ids are listed, not scored."""
        if len(body.client_ids) > settings.max_clients_per_request:
            return JSONResponse(
                {
                    "detail": [
                        {
                            "loc": ["body", "client_ids"],
                            "msg": f"at most {settings.max_clients_per_request} client ids per request",
                            "type": "too_long",
                        }
                    ]
                },
                status_code=422,
            )
        ids = list(dict.fromkeys(body.client_ids))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(batch_thread, score_batch, scorer, ids)

    def score_batch(scorer: Scorer, ids: list[str]) -> Response:
        rows, unknown = scorer.snapshot.rows_for(ids)
        scored = scorer.score(rows, reasons="all")
        metrics.clients_scored.inc(len(rows))
        return _json(
            {
                "cutoff_at": scorer.snapshot.cutoff_at.isoformat(),
                "model_versions": scorer.model_versions,
                "scores": to_records(scorer, scored),
                "unknown_client_ids": unknown,
            }
        )

    @app.get(
        "/v1/model",
        response_model=ModelInfo,
        tags=["model"],
        responses=ERRORS,
    )
    def model_info(scorer: Scorer = Depends(keyed_scorer)) -> Any:
        """Versions, scoring cutoff and test metrics of the champions being served."""
        return {
            "cutoff_at": scorer.snapshot.cutoff_at.isoformat(),
            "clients": scorer.snapshot.n_clients,
            "loaded_at": (state.loaded_at or dt.datetime.now(dt.UTC)).isoformat(),
            "features": scorer.snapshot.source,
            "models": {
                m.kind: {"name": m.name, "version": m.version, "metrics": _finite(m.metrics)}
                for m in (scorer.churn, scorer.winback)
            },
        }

    @app.post(
        "/admin/reload",
        response_model=ReloadResult,
        tags=["admin"],
        dependencies=[Depends(require_admin)],
        responses={
            401: ERRORS[401],
            403: {"model": ErrorBody, "description": "valid key but not an admin key"},
            409: {"model": ReloadResult, "description": "reload refused: the old models keep serving"},
        },
    )
    def reload() -> Any:
        """Load the current champions and the latest feature table, check a canary batch, then swap."""
        if not state.reload_lock.acquire(blocking=False):
            body = ReloadResult(reloaded=False, reason="another reload is running")
            return JSONResponse(body.model_dump(mode="json"), status_code=409)
        try:
            previous = state.scorer.model_versions if state.scorer is not None else None
            try:
                new = load()
                check_canary(new, settings.canary_rows)
            except Exception as e:
                metrics.reloads.labels(outcome="refused").inc()
                reason = f"{type(e).__name__}: {e}"
                log.warning("reload refused, old models keep serving: %s", reason)
                body = ReloadResult(reloaded=False, reason=reason, previous=previous, current=previous)
                return JSONResponse(body.model_dump(mode="json"), status_code=409)
            state.scorer, state.loaded_at, state.error = new, dt.datetime.now(dt.UTC), None  # the swap
            metrics.reloads.labels(outcome="swapped").inc()
            metrics.set_versions(new.model_versions)
            log.info("reloaded: %s -> %s", previous, new.model_versions)
            return ReloadResult(
                reloaded=True, previous=previous, current=new.model_versions, cutoff_at=new.snapshot.cutoff_at
            )
        finally:
            state.reload_lock.release()

    @app.get(
        "/metrics", tags=["health"], response_class=Response, responses={200: {"content": {"text/plain": {}}}}
    )
    async def prometheus_metrics() -> Response:
        """Prometheus metrics: requests, latency histogram, model versions, reloads."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


def _detail(message: str) -> bytes:
    """An error body as FastAPI's HTTPException handler writes it."""
    return orjson.dumps({"detail": message})


def _json(payload: Any, status_code: int = 200) -> Response:
    """Serialise a core answer directly (it is built to the response model's shape by to_records).

    FastAPI would validate every record against the response model first, which costs about ten
    times the JSON encoding for a batch of 1000 clients; the response model still documents the
    route, and the schemathesis test checks the answers against it. orjson writes the same JSON as
    ``json.dumps`` (shortest round-trip floats, UTF-8) about six times faster; the core never
    hands it a NaN (missing numbers are None).
    """
    return Response(content=orjson.dumps(payload), status_code=status_code, media_type="application/json")


def _without_opentelemetry() -> dict[str, Any]:
    """FastAPI's native OpenTelemetry switched off where this FastAPI has it.

    The API's metrics are Prometheus (/metrics). MLflow brings OpenTelemetry along, and with it on,
    FastAPI checks for configured providers on every request, and would trace every request if
    some library set a global provider: a per-request cost nobody asked for.
    """
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and np.isfinite(v)}
