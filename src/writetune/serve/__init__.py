"""Serving: an OpenAI-compatible HTTP API plus `/v1/edit` (suggested edits with character offsets) and a web page,
with continuous batching, token streaming, limits and Prometheus metrics. `writetune serve` calls `run_server`;
tests build the app with `create_app(model, settings)` from a `ServedModel`."""

from writetune.serve.app import create_app
from writetune.serve.served_model import ServedModel
from writetune.serve.server import BackgroundServer, load_served_model, run_server
from writetune.serve.settings import ServeSettings

__all__ = ["BackgroundServer", "ServeSettings", "ServedModel", "create_app", "load_served_model", "run_server"]
