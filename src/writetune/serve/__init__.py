"""Serving: an OpenAI-compatible HTTP API plus `/v1/edit` (suggested edits with character offsets) and a web page,
with micro-batching, limits and Prometheus metrics. `writetune serve` calls `run_server`; tests build the app with
`create_app(engine, settings)`."""

from writetune.serve.app import create_app
from writetune.serve.engine import Engine
from writetune.serve.server import BackgroundServer, load_engine, run_server
from writetune.serve.settings import ServeSettings

__all__ = ["BackgroundServer", "Engine", "ServeSettings", "create_app", "load_engine", "run_server"]
