"""The routes about the service rather than its answers: the web page (`/`; its assets are mounted at `/static` by
`create_app`), `/health` with the server's limits, and Prometheus metrics at `/metrics`."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, PlainTextResponse

from writetune import __version__
from writetune.serve.prometheus import CONTENT_TYPE
from writetune.serve.state import Served

STATIC = Path(__file__).parent / "static"

router = APIRouter()


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def index():
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/health")
@router.head("/health", include_in_schema=False)
async def health(server: Served):
    settings = server.settings
    return {"status": "ok", "model": server.model.model_id, "version": __version__,
            "uptime_s": round(time.time() - server.started, 1), "queue_depth": server.scheduler.queue_depth(),
            "auth_required": settings.api_key is not None,
            "limits": {"max_input_chars": settings.max_input_chars, "max_new_tokens": settings.max_new_tokens,
                       "max_queue": settings.max_queue, "max_batch_size": settings.max_batch_size,
                       "max_prompts": settings.max_prompts, "max_sentences": settings.max_sentences,
                       "request_timeout_s": settings.request_timeout_s,
                       "header_timeout_s": settings.header_timeout_s, "body_timeout_s": settings.body_timeout_s,
                       "max_connections": settings.max_connections}}


@router.api_route("/metrics", methods=["GET", "HEAD"], include_in_schema=False)
async def metrics(server: Served):
    return PlainTextResponse(server.metrics.render(), media_type=CONTENT_TYPE)
