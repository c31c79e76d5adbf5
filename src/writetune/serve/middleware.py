"""The ASGI middleware in front of the routes, outermost first: request metrics, the Host-header check (DNS
rebinding), the API key, the request-body limits (size and time) and the cancelling of a generating request whose
client disconnects. `add_middleware` stacks them on an app in that order."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import time

from fastapi import FastAPI

from writetune.serve.errors import error_payload
from writetune.serve.prometheus import ServerMetrics
from writetune.serve.settings import ServeSettings

_GENERATING = ("/v1/chat/completions", "/v1/completions", "/v1/edit", "/v2/check")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # metric labels; any other is "other"
_ROUTES = ("/", "/health", "/metrics", "/v1/models", "/v1/tasks", "/v1/chat/completions", "/v1/completions",
           "/v1/edit", "/v2/check", "/v2/languages")


def add_middleware(app: FastAPI, settings: ServeSettings, metrics: ServerMetrics) -> None:
    """Stack the middleware on `app`; the last added runs first."""
    app.add_middleware(DisconnectMiddleware)  # innermost: after auth and body limit
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(AuthMiddleware, api_key=settings.api_key)
    app.add_middleware(HostCheckMiddleware, allowed=settings.allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=metrics)


async def _send_json(send, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})




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
            return await _send_json(send, 400, error_payload(
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
            await _send_json(send, 401, error_payload(
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
        await _send_json(send, 413, error_payload(f"request body larger than {self.limit} bytes",
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
            return await _send_json(send, 400, error_payload("invalid Content-Length", "bad_request"))
        chunks, size = [], 0
        while True:
            message = await _receive_by(receive, deadline)
            if message is None:
                return await _send_json(send, 408, error_payload(
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

