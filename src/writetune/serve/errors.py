"""Errors as the API answers them, `{"error": {"message", "type", "code", "param"}}` with an HTTP status: `ApiError`
for a request the routes refuse, and the app's handlers that give validation errors, HTTP errors, a full queue, a
timeout, a failed generation and any unexpected exception that same shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from writetune.serve.scheduler import GenerationError, QueueFull, RequestTimeout

log = logging.getLogger("writetune.serve")


class ApiError(Exception):
    """An error answered as `{"error": {"message", "type", "code"}}` with an HTTP status."""

    def __init__(self, status: int, message: str, *, code: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.kind, self.headers = status, message, code, kind, headers or {}


def error_payload(message: str, code: str | None, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


def error_response(status: int, message: str, *, code: str | None = None, kind: str = "invalid_request_error",
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_payload(message, code, kind), status_code=status, headers=headers)


def _validation_response(err: RequestValidationError) -> JSONResponse:
    """400 for a body that is not JSON or not a JSON object; 422 naming up to five invalid fields otherwise."""
    problems = err.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        where = next(p for p in problems if p.get("type") == "json_invalid")
        detail = (where.get("ctx") or {}).get("error", "invalid JSON")
        return error_response(400, f"the request body is not valid JSON ({detail})", code="invalid_json")
    if any(tuple(p.get("loc", ())) == ("body",) and p.get("type") in ("model_attributes_type", "dict_type",
                                                                      "missing") for p in problems):
        return error_response(400, "the request body must be a JSON object (send Content-Type: "
                                   "application/json)", code="invalid_json")
    text = "; ".join(f"{'.'.join(str(x) for x in p.get('loc', ()) if x != 'body') or 'body'}: {p.get('msg')}"
                     for p in problems[:5])
    return error_response(422, text, code="invalid_request")


def _http_response(err: StarletteHTTPException) -> JSONResponse:
    if err.status_code == 400 and "parsing the body" in str(err.detail):  # FastAPI's words; the cause says why
        why = {UnicodeDecodeError: "it could not be decoded as UTF-8",
               RecursionError: "it nests arrays or objects too deeply"}.get(type(err.__cause__),
                                                                           "it could not be parsed")
        return error_response(400, f"the request body is not valid JSON ({why})", code="invalid_json")
    return error_response(err.status_code, str(err.detail), code="not_found" if err.status_code == 404 else None,
                          headers=getattr(err, "headers", None))


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error raised while handling a request in the API's error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request, err: ApiError):
        return error_response(err.status, err.message, code=err.code, kind=err.kind, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, err: RequestValidationError):
        return _validation_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, err: StarletteHTTPException):
        return _http_response(err)

    @app.exception_handler(QueueFull)
    async def _busy(_request, err: QueueFull):
        return error_response(503, str(err), code="queue_full", kind="server_busy",
                              headers={"Retry-After": str(err.retry_after)})

    @app.exception_handler(RequestTimeout)
    async def _timeout(_request, err: RequestTimeout):
        return error_response(504, f"request timed out: {err}", code="timeout", kind="timeout")

    @app.exception_handler(GenerationError)
    async def _generation(_request, err: GenerationError):
        return error_response(500, str(err), code="generation_failed", kind="server_error")

    @app.exception_handler(Exception)
    async def _unexpected(_request, err: Exception):
        log.exception("unexpected error")
        return error_response(500, f"internal error: {type(err).__name__}: {err}", code="internal_error",
                              kind="server_error")
