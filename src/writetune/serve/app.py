"""The HTTP app: OpenAI-compatible chat/completions/models, `/v1/edit` with character-offset edits, LanguageTool's
`/v2/check`, health, Prometheus metrics and the web page, all behind limits that turn bad input into a 4xx with a
message. `create_app` assembles it from the routers of those modules, the middleware and the error handlers.

Every request that generates goes through the `Scheduler`, which feeds the model's continuous-batching engine: a
request that arrives while others decode joins them at the engine's next step, and streamed answers leave token by
token.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from writetune import __version__
from writetune.serve import edit_service, languagetool, openai_routes, service_routes
from writetune.serve.served_model import ServedModel
from writetune.serve.errors import add_error_handlers
from writetune.serve.middleware import add_middleware
from writetune.serve.settings import ServeSettings
from writetune.serve.state import ServerState


def create_app(model: ServedModel, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app serving `model` under `settings`. Its lifespan starts and stops the scheduler."""
    settings = settings or ServeSettings()
    server = ServerState(model, settings)

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
    add_middleware(app, settings, server.metrics)
    add_error_handlers(app)
    app.include_router(service_routes.router)
    app.mount("/static", StaticFiles(directory=service_routes.STATIC), name="static")
    app.include_router(openai_routes.router)
    app.include_router(edit_service.router)
    app.include_router(languagetool.router)
    return app
