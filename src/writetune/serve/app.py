"""The HTTP app: OpenAI-compatible chat/completions/models, `/v1/edit` with character-offset edits, health,
Prometheus metrics and the web page, all behind limits that turn bad input into a 4xx with a message.

Every request that generates goes through the `Scheduler`, which feeds the model's continuous-batching engine: a
request that arrives while others decode joins them at the engine's next step, and streamed answers leave token by
token. A chat is rendered whole with the model's own prompt format (the one renderer in `writetune.prompt`, as in
training): its system messages replace the format's system prompt, and earlier user and assistant turns come before
the last user message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from writetune import __version__
from writetune.generate import DecodingConfig, Request
from writetune.serve.edits import ErrantTyper, apply_edits, split_sentences, text_edits
from writetune.serve.engine import Engine
from writetune.serve.prometheus import CONTENT_TYPE, ServerMetrics
from writetune.serve.rewrite_check import check_rewrite
from writetune.serve.scheduler import GenerationError, QueueFull, RequestTimeout, Scheduler
from writetune.serve.settings import ServeSettings

log = logging.getLogger("writetune.serve")
STATIC = Path(__file__).parent / "static"
ALL_TASKS = ("grammaticality", "clarity")  # what task "all" runs, in order
_GENERATING = ("/v1/chat/completions", "/v1/completions", "/v1/edit", "/v2/check")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # metric labels; any other is "other"
_ROUTES = ("/", "/health", "/metrics", "/v1/models", "/v1/tasks", "/v1/chat/completions", "/v1/completions",
           "/v1/edit", "/v2/check", "/v2/languages")


class ApiError(Exception):
    """An error answered as `{"error": {"message", "type", "code"}}` with an HTTP status."""

    def __init__(self, status: int, message: str, *, code: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.kind, self.headers = status, message, code, kind, headers or {}


def _error_response(status: int, message: str, *, code: str | None = None, kind: str = "invalid_request_error",
                    headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": None}},
                        status_code=status, headers=headers)


# ---- request bodies ---------------------------------------------------------------------------------------------

class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send fields this server does not use


class ChatMessage(_Lenient):
    role: str
    content: str | list[dict[str, Any]] | None = None


class _Sampling(_Lenient):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=8)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # a signed 64-bit integer, as OpenAI's API has it


class ChatCompletionBody(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionBody(_Sampling):
    prompt: str | list[str]
    echo: bool = False


class EditBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    task: str = "grammaticality"
    text: str
    raw_answers: bool = False  # include the model's answers that were not offered as edits


# ---- ASGI middleware ---------------------------------------------------------------------------------------------

async def _send_json(send, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _error_payload(message: str, code: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


class MetricsMiddleware:
    """Counts every HTTP request by route, method and status and times it to the end of its response. Route and
    method labels come from closed sets (anything else is `other`), so no client can add series."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = path if path in _ROUTES else "/static" if path.startswith("/static/") else "other"
        started, status = time.perf_counter(), [500]

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.observe_request(route, method, status[0], time.perf_counter() - started)


class DisconnectMiddleware:
    """Cancels a generating request's handling (and so its queued or running generation) when its client
    disconnects, whether its answer is still being generated or being streamed.

    It runs after `BodyLimitMiddleware`, so the whole body has been read: the first `receive()` returns it, and the
    next one returns only when the client has gone away (or the answer is complete)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in _GENERATING:
            return await self.app(scope, receive, send)
        body = await receive()
        gone = asyncio.ensure_future(_disconnect(receive))
        given = [False]

        async def replay():
            if not given[0]:
                given[0] = True
                return body
            return await asyncio.shield(gone)

        handler = asyncio.ensure_future(self.app(scope, replay, send))
        try:
            await asyncio.wait({handler, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done():  # the client went away: stop working for it
                handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handler
        finally:
            gone.cancel()
            handler.cancel()  # a no-op once it has finished; stops it if this request itself was cancelled


async def _disconnect(receive) -> dict:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return message


class HostCheckMiddleware:
    """Answers only requests whose Host header names this server: an IP address (a browser that sends one has
    connected to that address itself), `localhost`, or a name in `allowed` ("*" accepts any). A page on another
    domain that rebinds its name to this server's address sends its own name and gets 400, so a server without an
    API key on a loopback address is not reachable from a web page through DNS rebinding."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app, self.allowed = app, {h.lower().rstrip(".") for h in allowed}

    def accepts(self, host_header: bytes | None) -> bool:
        if host_header is None or "*" in self.allowed:  # HTTP/1.0 without Host: not a browser
            return True
        host = host_header.decode("latin-1").strip().lower()
        if host.startswith("["):  # [v6]:port
            host = host[1:host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        host = host.rstrip(".")
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return host == "localhost" or host in self.allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = dict(scope.get("headers") or []).get(b"host")
        if not self.accepts(host):
            shown = host.decode("latin-1")[:100] if host else ""
            return await _send_json(send, 400, _error_payload(
                f"this server does not answer for host {shown!r}; start it with --allowed-hosts naming it",
                "invalid_host"))
        return await self.app(scope, receive, send)


class AuthMiddleware:
    """With an API key set, /v1/* (except the public task list) needs `Authorization: Bearer <key>` or
    `X-API-Key: <key>`; anything else gets 401 before its body is read."""

    def __init__(self, app, api_key: str | None):
        self.app, self.key = app, api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if (self.key is None or scope["type"] != "http" or not scope["path"].startswith("/v1/")
                or (scope["path"] == "/v1/tasks" and scope["method"] == "GET")):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key")
        bearer = headers.get(b"authorization", b"")
        if bearer[:7].lower() == b"bearer ":
            given = bearer[7:].strip()
        if given is None or not hmac.compare_digest(given, self.key):
            await _send_json(send, 401, _error_payload(
                "missing or wrong API key: send 'Authorization: Bearer <key>'", "invalid_api_key",
                "authentication_error"), {"WWW-Authenticate": "Bearer"})
            return
        return await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Reads a request body up to `limit` bytes, within `timeout_s`, before the app sees it; a larger one gets 413
    without being parsed, a slower one 408, and either closes the connection. The rest of an oversized body is
    read and dropped (up to `drain` bytes, within the same deadline) so that the client, still sending, receives
    the 413 instead of a reset connection; beyond that the connection is closed."""

    def __init__(self, app, limit: int, timeout_s: float, drain: int = 64 << 20):
        self.app, self.limit, self.timeout_s, self.drain = app, limit, timeout_s, drain

    async def _refuse(self, receive, send, more_body: bool, deadline: float) -> None:
        dropped = 0
        while more_body and dropped <= self.drain:
            message = await _receive_by(receive, deadline)
            if message is None or message["type"] == "http.disconnect":
                break
            dropped += len(message.get("body", b""))
            more_body = message.get("more_body", False)
        await _send_json(send, 413, _error_payload(f"request body larger than {self.limit} bytes",
                                                   "request_too_large"), {"Connection": "close"})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        declared = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if declared is not None and int(declared) > self.limit:
                return await self._refuse(receive, send, True, deadline)
        except ValueError:
            return await _send_json(send, 400, _error_payload("invalid Content-Length", "bad_request"))
        chunks, size = [], 0
        while True:
            message = await _receive_by(receive, deadline)
            if message is None:
                return await _send_json(send, 408, _error_payload(
                    f"the request body did not arrive within {self.timeout_s:g} s", "body_timeout"),
                    {"Connection": "close"})
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._refuse(receive, send, message.get("more_body", False), deadline)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), [False]

        async def replay():
            if not replayed[0]:
                replayed[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _receive_by(receive, deadline: float) -> dict | None:
    """The next ASGI message, or None when `deadline` (event-loop time) passes first."""
    try:
        return await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
    except asyncio.TimeoutError:
        return None


# ---- helpers -----------------------------------------------------------------------------------------------------

def _content_text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") not in ("text", "input_text") or not isinstance(part.get("text"), str):
            raise ApiError(422, f"unsupported message content part of type {part.get('type')!r}: only text parts "
                                "are supported", code="unsupported_content")
        parts.append(part["text"])
    return "\n".join(parts)


def _stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if len(stops) > 4:
        raise ApiError(422, "at most 4 stop sequences", code="invalid_stop")
    return [s for s in stops if s]


class Server:
    """State shared by the routes of one app."""

    def __init__(self, engine: Engine, settings: ServeSettings):
        self.engine, self.settings = engine, settings
        self.metrics = ServerMetrics()
        self.scheduler = Scheduler(engine, max_batch_size=settings.max_batch_size, max_queue=settings.max_queue,
                                   metrics=self.metrics)
        self.typer = ErrantTyper(enabled=settings.errant_types)
        self.started = time.time()

    def max_tokens(self, asked: int | None) -> int:
        limit = self.settings.max_new_tokens
        if asked is not None and asked > limit:
            raise ApiError(422, f"max_tokens {asked} exceeds this server's limit of {limit} new tokens",
                           code="max_tokens_too_large")
        return asked if asked is not None else min(self.settings.default_max_tokens, limit)

    def check_input(self, texts: list[str]) -> None:
        """413 for too many characters in all `texts` together; 422 for text that is not valid Unicode (a lone
        surrogate, which JSON's \\u escapes can carry but no tokenizer can encode), before anything is queued."""
        n = sum(len(t) for t in texts)
        if n > self.settings.max_input_chars:
            raise ApiError(413, f"input is {n} characters; this server accepts at most "
                                f"{self.settings.max_input_chars}", code="input_too_long")
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise ApiError(422, f"the text is not valid Unicode: a lone surrogate "
                                    f"{text[err.start]!r} at character {err.start}", code="invalid_text") from None

    def check_sequences(self, count: int, what: str) -> None:
        """413 for a request that alone needs more generation sequences than the queue holds."""
        if count > self.settings.max_queue:
            raise ApiError(413, f"this request needs {count} generations ({what}); this server queues at most "
                                f"{self.settings.max_queue}", code="request_too_large")

    def sampling(self, body: _Sampling, max_tokens: int) -> DecodingConfig:
        """Greedy unless a temperature above 0 is asked for; the budget is exactly `max_tokens`. Sampling is
        reproducible with a `seed` and random without one."""
        common = dict(max_new_tokens=max_tokens, length_ratio=0.0, length_slack=max_tokens)
        if not body.temperature:  # greedy answers do not depend on a seed, so greedy requests share batches
            return DecodingConfig(strategy="greedy", seed=0, **common)
        seed = body.seed if body.seed is not None else secrets.randbits(62)
        return DecodingConfig(strategy="sample", temperature=body.temperature, top_p=body.top_p or 1.0, seed=seed,
                              **common)

    async def generate(self, requests: list[Request], decoding: DecodingConfig,
                       timeout_s: float | None = None) -> list[str]:
        """The answers' texts, in order."""
        job = self.scheduler.submit(requests, decoding)
        answers = await self.scheduler.answers(job, timeout_s or self.settings.request_timeout_s)
        return [a.text for a in answers]


def conversation(messages: list[ChatMessage], texts: list[str]) -> Request:
    """A chat as one request: system (and developer) messages become the system prompt, each user turn answered by
    an assistant message becomes a history turn, and the user messages after the last answer are the request."""
    system, history, pending = [], [], []
    for message, text in zip(messages, texts):
        if message.role in ("system", "developer"):
            system.append(text)
        elif message.role == "user":
            pending.append(text)
        elif message.role == "assistant":
            history.append(("\n\n".join(pending), text))
            pending = []
        else:
            raise ApiError(422, f"unsupported message role {message.role!r}: expected system, developer, user or "
                                "assistant", code="unsupported_role")
    user = "\n\n".join(pending)
    if not user.strip():
        raise ApiError(422, "messages need a non-empty user message after the last assistant message",
                       code="no_user_message")
    return Request(user, history=tuple(history), system="\n\n".join(system) if system else None)


def _sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


def create_app(engine: Engine, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving `engine` under `settings`. Its lifespan starts and stops the scheduler."""
    settings = settings or ServeSettings()
    server = Server(engine, settings)

    @asynccontextmanager
    async def lifespan(_app):
        await server.scheduler.start()
        if settings.errant_types:  # load spaCy in the background so the first grammar edit does not wait for it
            threading.Thread(target=server.typer.load, name="writetune-errant-load", daemon=True).start()
        try:
            yield
        finally:
            await server.scheduler.stop()

    app = FastAPI(title="writetune", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server
    app.add_middleware(DisconnectMiddleware)  # innermost: after auth and body limit
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(AuthMiddleware, api_key=settings.api_key)
    app.add_middleware(HostCheckMiddleware, allowed=settings.allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=server.metrics)

    @app.exception_handler(ApiError)
    async def _api_error(_request, err: ApiError):
        return _error_response(err.status, err.message, code=err.code, kind=err.kind, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, err: RequestValidationError):
        problems = err.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            where = next(p for p in problems if p.get("type") == "json_invalid")
            detail = (where.get("ctx") or {}).get("error", "invalid JSON")
            return _error_response(400, f"the request body is not valid JSON ({detail})", code="invalid_json")
        if any(tuple(p.get("loc", ())) == ("body",) and p.get("type") in ("model_attributes_type", "dict_type",
                                                                          "missing") for p in problems):
            return _error_response(400, "the request body must be a JSON object (send Content-Type: "
                                        "application/json)", code="invalid_json")
        text = "; ".join(f"{'.'.join(str(x) for x in p.get('loc', ()) if x != 'body') or 'body'}: {p.get('msg')}"
                         for p in problems[:5])
        return _error_response(422, text, code="invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, err: StarletteHTTPException):
        if err.status_code == 400 and "parsing the body" in str(err.detail):  # FastAPI's words; the cause says why
            why = {UnicodeDecodeError: "it could not be decoded as UTF-8",
                   RecursionError: "it nests arrays or objects too deeply"}.get(type(err.__cause__),
                                                                               "it could not be parsed")
            return _error_response(400, f"the request body is not valid JSON ({why})", code="invalid_json")
        return _error_response(err.status_code, str(err.detail), code="not_found" if err.status_code == 404 else None,
                               headers=getattr(err, "headers", None))

    @app.exception_handler(QueueFull)
    async def _busy(_request, err: QueueFull):
        return _error_response(503, str(err), code="queue_full", kind="server_busy",
                               headers={"Retry-After": str(err.retry_after)})

    @app.exception_handler(RequestTimeout)
    async def _timeout(_request, err: RequestTimeout):
        return _error_response(504, f"request timed out: {err}", code="timeout", kind="timeout")

    @app.exception_handler(GenerationError)
    async def _generation(_request, err: GenerationError):
        return _error_response(500, str(err), code="generation_failed", kind="server_error")

    @app.exception_handler(Exception)
    async def _unexpected(_request, err: Exception):
        log.exception("unexpected error")
        return _error_response(500, f"internal error: {type(err).__name__}: {err}", code="internal_error",
                               kind="server_error")

    # ---- plain routes ------------------------------------------------------------------------------------------

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    @app.head("/health", include_in_schema=False)
    async def health():
        return {"status": "ok", "model": engine.model_id, "version": __version__,
                "uptime_s": round(time.time() - server.started, 1), "queue_depth": server.scheduler.queue_depth(),
                "auth_required": settings.api_key is not None,
                "limits": {"max_input_chars": settings.max_input_chars, "max_new_tokens": settings.max_new_tokens,
                           "max_queue": settings.max_queue, "max_batch_size": settings.max_batch_size,
                           "max_prompts": settings.max_prompts, "max_sentences": settings.max_sentences,
                           "request_timeout_s": settings.request_timeout_s,
                           "header_timeout_s": settings.header_timeout_s, "body_timeout_s": settings.body_timeout_s,
                           "max_connections": settings.max_connections}}

    @app.api_route("/metrics", methods=["GET", "HEAD"], include_in_schema=False)
    async def metrics():
        return PlainTextResponse(server.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": engine.model_id, "object": "model",
                                            "created": int(server.started), "owned_by": "writetune"}]}

    @app.get("/v1/tasks")
    async def tasks():
        from writetune.tasks import writing_tasks

        listed = [{"name": t.name, "aliases": list(t.aliases), "description": t.description,
                   "instruction": t.instruction} for t in writing_tasks()]
        listed.append({"name": "all", "aliases": [], "description": f"{' then '.join(ALL_TASKS)}",
                       "instruction": None})
        return {"object": "list", "data": listed}

    # ---- OpenAI-compatible generation ----------------------------------------------------------------------------

    async def respond(body: _Sampling, requests: list[Request], max_tokens: int, prompt_tokens: int, *,
                      chat: bool, echoes: list[str]):
        """A chat or completion answer, whole or streamed: the one place both routes generate. `echoes` are the texts
        each choice starts with (the prompt, for a completion with `echo`)."""
        job = server.scheduler.submit(requests, server.sampling(body, max_tokens), _stops(body.stop))
        ident, created = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": engine.model_id}

        def usage(answers) -> dict:
            completion = sum(a.tokens for a in answers)
            return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                    "total_tokens": prompt_tokens + completion}

        if not body.stream:
            answers = await server.scheduler.answers(job, settings.request_timeout_s)
            if chat:
                choices = [{"index": i, "message": {"role": "assistant", "content": a.text}, "logprobs": None,
                            "finish_reason": a.finish_reason} for i, a in enumerate(answers)]
            else:
                choices = [{"index": i, "text": echoes[i] + a.text, "logprobs": None,
                            "finish_reason": a.finish_reason} for i, a in enumerate(answers)]
            return {**head, "choices": choices, "usage": usage(answers)}

        if chat:
            head["object"] = "chat.completion.chunk"

        def chunk(index: int, piece: str, reason: str | None = None, delta: dict | None = None) -> str:
            if chat:
                delta = delta if delta is not None else ({"content": piece} if piece else {})
                choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
            else:
                choice = {"index": index, "text": piece, "logprobs": None, "finish_reason": reason}
            return _sse({**head, "choices": [choice]})

        async def events():
            answers = [None] * len(requests)
            for i, echo in enumerate(echoes):
                if chat:
                    yield chunk(i, "", delta={"role": "assistant", "content": ""})
                elif echo:
                    yield chunk(i, echo)
            try:
                async for index, piece, answer in server.scheduler.stream(job, settings.request_timeout_s):
                    if piece:
                        yield chunk(index, piece)
                    if answer is not None:
                        answers[index] = answer
                        yield chunk(index, "", answer.finish_reason)
            except (RequestTimeout, GenerationError) as err:  # the response has started: the error is an event
                code = "timeout" if isinstance(err, RequestTimeout) else "generation_failed"
                yield _sse(_error_payload(str(err), code, "server_error"))
                return
            if (body.stream_options or {}).get("include_usage"):
                yield _sse({**head, "choices": [], "usage": usage(answers)})
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionBody):
        texts = [_content_text(m.content) for m in body.messages]
        server.check_input(texts)
        request = conversation(body.messages, texts)
        max_tokens = server.max_tokens(body.max_completion_tokens or body.max_tokens)
        server.check_sequences(body.n, "n")
        return await respond(body, [request] * body.n, max_tokens, engine.prompt_tokens(request), chat=True,
                             echoes=[""] * body.n)

    @app.post("/v1/completions")
    async def completions(body: CompletionBody):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts or not all(p.strip() for p in prompts):
            raise ApiError(422, "prompt must be a non-empty string or a list of them", code="empty_prompt")
        if len(prompts) > settings.max_prompts:
            raise ApiError(413, f"{len(prompts)} prompts in one request; this server accepts at most "
                                f"{settings.max_prompts}", code="too_many_prompts")
        server.check_input(prompts)
        server.check_sequences(len(prompts) * body.n, f"{len(prompts)} prompts x n {body.n}")
        max_tokens = server.max_tokens(body.max_tokens)
        requests = [Request(p) for p in prompts for _ in range(body.n)]
        prompt_tokens = sum(engine.prompt_tokens(Request(p)) for p in prompts)
        return await respond(body, requests, max_tokens, prompt_tokens, chat=False,
                             echoes=[r.instruction if body.echo else "" for r in requests])

    # ---- suggested edits ---------------------------------------------------------------------------------------------

    @app.post("/v1/edit")
    async def edit(body: EditBody):
        from writetune.tasks import UnknownTaskError, get_task

        server.check_input([body.text])
        if not body.text.strip():
            raise ApiError(422, "text is empty", code="empty_text")
        name = body.task.strip().lower()
        try:
            chosen = [get_task(t) for t in ALL_TASKS] if name == "all" else [get_task(name)]
        except UnknownTaskError as err:
            raise ApiError(422, f"{err}; or 'all' ({' then '.join(ALL_TASKS)})", code="unknown_task") from None
        if not all(t.writing for t in chosen):
            raise ApiError(422, f"task '{chosen[0].name}' is not a writing task; /v1/edit edits text",
                           code="not_a_writing_task")
        spans = split_sentences(body.text)
        if len(spans) > settings.max_sentences:
            raise ApiError(413, f"the text has {len(spans)} sentences; this server edits at most "
                                f"{settings.max_sentences} per request", code="too_many_sentences")
        server.check_sequences(len(spans), f"{len(spans)} sentences")
        sources = [body.text[s:e] for s, e in spans]
        decoding = DecodingConfig(strategy="greedy", max_new_tokens=settings.max_new_tokens)
        deadline = time.monotonic() + settings.request_timeout_s
        stages, current, unconfident = [], sources, []
        for task in chosen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeout(f"no answer within {settings.request_timeout_s:g} s")
            answers = await server.generate([Request(task.instruction, s) for s in current], decoding, remaining)
            kept = []
            for k, (given, answer) in enumerate(zip(current, answers)):
                verdict = check_rewrite(task.name, given, answer) if settings.rewrite_check else None
                if verdict is not None and not verdict.confident:  # chat is never offered as edits: the sentence stays as it was
                    server.metrics.observe_unconfident(task.name)
                    unconfident.append({"sentence": k, "task": task.name, "reason": verdict.reason,
                                        **({"answer": answer} if body.raw_answers else {})})
                kept.append(given if verdict is not None and not verdict.confident else answer)
            current = kept
            stages.append((task.name, current))
        output, pos = [], 0
        for (s, e), answer in zip(spans, current):
            output.extend((body.text[pos:s], answer))
            pos = e
        output = "".join(output) + body.text[pos:]
        typed = any(t.name == "grammaticality" for t in chosen) and server.typer.enabled
        edits = await asyncio.to_thread(_typed_edits, server.typer, spans, sources, stages, typed)
        if apply_edits(body.text, edits) != output:  # the invariant the page relies on; a bug if it ever fails
            raise GenerationError("internal error: the edits do not reproduce the output")
        return {"object": "edit", "model": engine.model_id, "task": "all" if name == "all" else chosen[0].name,
                "output": output, "edits": [e.to_dict() for e in edits],
                "edit_types": "errant" if typed and server.typer.available else "word",
                "sentences": len(spans),
                "no_confident_suggestion": unconfident,
                "stages": [{"task": t, "outputs": list(outs)} for t, outs in stages] if len(stages) > 1 else None}

    from writetune.serve.languagetool import router as languagetool_router

    app.state.edit = edit  # the LanguageTool API's checks run through this same edit service
    app.include_router(languagetool_router)
    return app


def _typed_edits(typer: ErrantTyper, spans, sources, stages, typed: bool) -> list:
    """Word-level edits from each source sentence to its final output. With grammar among the stages, edits get
    ERRANT types; after several stages, an edit that is exactly a grammar-stage edit gets that edit's ERRANT type
    and the others keep their word-level type (insert, delete, replace, whitespace)."""
    final = stages[-1][1]
    grammar = dict(stages).get("grammaticality")
    result = []
    for k, ((start, _end), source, target) in enumerate(zip(spans, sources, final)):
        found = text_edits(source, target, offset=start)
        if not typed or not found:
            result.extend(found)
        elif len(stages) == 1:
            result.extend(typer.type_edits(source, target, found, offset=start))
        else:
            g_edits = typer.type_edits(source, grammar[k], text_edits(source, grammar[k], offset=start), offset=start)
            by_key = {(e.start, e.end, e.replacement): e.type for e in g_edits}
            result.extend(replace(e, type=by_key.get((e.start, e.end, e.replacement), e.type)) for e in found)
    return result
