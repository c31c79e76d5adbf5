"""Running the app: `run_server(settings)` for `writetune serve`, and `BackgroundServer`, a real uvicorn server on a
free loopback port in a thread, for tests and benchmarks. Both run uvicorn with the connection limits of the
settings (`writetune.serve.connections`)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import torch
import uvicorn

from writetune.serve.app import create_app
from writetune.serve.connections import guarded
from writetune.serve.served_model import ServedModel
from writetune.serve.settings import ServeSettings


def load_served_model(settings: ServeSettings) -> ServedModel:
    if settings.threads:
        torch.set_num_threads(settings.threads)
    return ServedModel.load(settings.model, dtype=settings.dtype, device=settings.device, model_id=settings.model_name)


def run_server(settings: ServeSettings, model: ServedModel | None = None) -> None:
    """Load the model (unless one is given) and serve it until interrupted."""
    model = model or load_served_model(settings)
    logging.getLogger("writetune.serve").setLevel(logging.INFO)
    uvicorn.Server(uvicorn_config(create_app(model, settings), settings, host=settings.host, port=settings.port,
                                  log_level="info")).run()


def uvicorn_config(app, settings: ServeSettings, **options) -> uvicorn.Config:
    """uvicorn's configuration for `app`: h11 with the request-head timeout and connection limit of `settings`."""
    return uvicorn.Config(app, http=guarded(settings.header_timeout_s, settings.max_connections),
                          timeout_graceful_shutdown=5, **options)


class BackgroundServer:
    """`with BackgroundServer(app) as url:` serves `app` with uvicorn on 127.0.0.1 at a free port, in a thread, with
    the connection limits of the app's settings."""

    def __init__(self, app, host: str = "127.0.0.1", log_level: str = "warning"):
        self.app, self.host, self.log_level = app, host, log_level
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        port = sock.getsockname()[1]
        settings = getattr(getattr(self.app.state, "server", None), "settings", None) or ServeSettings()
        config = uvicorn_config(self.app, settings, host=self.host, port=port, log_level=self.log_level,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name="writetune-uvicorn")
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        self.url = f"http://{self.host}:{port}"
        return self.url

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=30)
