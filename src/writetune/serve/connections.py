"""Connection limits below the app, as uvicorn's h11 protocol with two additions: a request's head (request line and
headers) must arrive within `header_timeout_s` of the connection opening or of the first byte of the next request on
a kept-alive connection, and at most `max_connections` connections are open at once.

Uvicorn alone closes a connection only when it is idle after a response (keep-alive timeout); a client sending one
header byte every few seconds, or nothing at all, held its connection forever, and enough of them held them all. A
head that takes too long gets 408 and the connection is closed; a connection beyond the limit gets 503 and is closed
at once. The body's own deadline is the app's (`BodyLimitMiddleware`), where the body is read.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.h11_impl import H11Protocol


def _raw_response(status: int, reason: str, message: str, code: str) -> bytes:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code,
                                 "param": None}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n")
    return head.encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a cap on open connections (set by `guarded`)."""

    header_timeout_s: float = 10.0
    max_connections: int = 256

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_raw_response(503, "Service Unavailable", f"the server has {self.max_connections} "
                                          "connections open, its limit; retry shortly", "too_many_connections"))
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_head_timer()  # the first bytes of the next request on a kept-alive connection
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # a new request's head was complete: the app has it now
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        self._cancel_head_timer()
        super().on_response_complete()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        self.transport.write(_raw_response(408, "Request Timeout", f"the request line and headers did not arrive "
                                           f"within {self.header_timeout_s:g} s", "header_timeout"))
        self.transport.close()


def guarded(header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn (`http=`) for these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout_s": header_timeout_s, "max_connections": max_connections})
