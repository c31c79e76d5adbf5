"""Server counters in the Prometheus text exposition format (version 0.0.4), written by hand: request counts by route
and status, a latency histogram, generated tokens and generation time (so tokens/s), sequences per engine step or
generator call, and queue depth. (The evaluation metrics are `writetune.metrics`; these only count the server.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))


class Histogram:
    """Cumulative buckets, sum and count, per label set."""

    def __init__(self, buckets: Sequence[float]):
        self.buckets = tuple(buckets)
        self.series: dict[tuple, list] = {}

    def observe(self, labels: tuple, value: float) -> None:
        entry = self.series.setdefault(labels, [[0] * (len(self.buckets) + 1), 0.0])
        counts = entry[0]
        for k, bound in enumerate(self.buckets):
            if value <= bound:
                counts[k] += 1
        counts[-1] += 1
        entry[1] += value

    def lines(self, name: str) -> list[str]:
        out = []
        for labels, (counts, total) in sorted(self.series.items()):
            for bound, count in zip((*self.buckets, float("inf")), counts):
                out.append(f"{name}_bucket{_labels((*labels, ('le', _number(bound))))} {count}")
            out.append(f"{name}_sum{_labels(labels)} {_number(total)}")
            out.append(f"{name}_count{_labels(labels)} {counts[-1]}")
        return out


class ServerMetrics:
    """Thread-safe counters for one server. `queue_depth` and `inflight` are read at exposition time."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple, int] = {}
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.rejected: dict[str, int] = {}
        self.unconfident: dict[str, int] = {}  # task -> sentences whose answer was not offered as edits
        self.generated_tokens = 0
        self.generation_seconds = 0.0
        self.generated_requests = 0
        self.last_tokens_per_second = 0.0
        self.queue_depth: Callable[[], int] = lambda: 0
        self.inflight: Callable[[], int] = lambda: 0

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (("route", route), ("method", method), ("status", str(status)))
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency.observe((("route", route),), seconds)

    def observe_batch(self, size: int) -> None:
        with self._lock:
            self.batch_sizes.observe((), size)

    def observe_generation(self, requests: int, tokens: int, seconds: float) -> None:
        with self._lock:
            self.generated_requests += requests
            self.generated_tokens += tokens
            self.generation_seconds += seconds
            if seconds > 0:
                self.last_tokens_per_second = tokens / seconds

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def observe_unconfident(self, task: str) -> None:
        with self._lock:
            self.unconfident[task] = self.unconfident.get(task, 0) + 1

    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.generation_seconds if self.generation_seconds else 0.0

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP writetune_requests_total HTTP requests answered, by route, method and status code.",
                "# TYPE writetune_requests_total counter",
            ]
            lines += [f"writetune_requests_total{_labels(k)} {v}" for k, v in sorted(self.requests.items())]
            lines += [
                "# HELP writetune_request_duration_seconds Time from request to the end of the response.",
                "# TYPE writetune_request_duration_seconds histogram",
                *self.latency.lines("writetune_request_duration_seconds"),
                "# HELP writetune_rejected_total Requests refused before generation, by reason.",
                "# TYPE writetune_rejected_total counter",
                *(f"writetune_rejected_total{_labels((('reason', r),))} {n}" for r, n in sorted(self.rejected.items())),
                "# HELP writetune_unconfident_total Sentences whose answer was not a rewrite of them (no suggestion).",
                "# TYPE writetune_unconfident_total counter",
                *(f"writetune_unconfident_total{_labels((('task', t),))} {n}" for t, n in sorted(self.unconfident.items())),
                "# HELP writetune_generated_tokens_total Answer tokens generated.",
                "# TYPE writetune_generated_tokens_total counter",
                f"writetune_generated_tokens_total {self.generated_tokens}",
                "# HELP writetune_generation_seconds_total Wall time spent in the generator.",
                "# TYPE writetune_generation_seconds_total counter",
                f"writetune_generation_seconds_total {_number(self.generation_seconds)}",
                "# HELP writetune_generated_requests_total Generation requests (sentences, prompts) completed.",
                "# TYPE writetune_generated_requests_total counter",
                f"writetune_generated_requests_total {self.generated_requests}",
                "# HELP writetune_tokens_per_second Generated tokens per second of generator time, since start.",
                "# TYPE writetune_tokens_per_second gauge",
                f"writetune_tokens_per_second {_number(self.tokens_per_second())}",
                "# HELP writetune_last_batch_tokens_per_second Generated tokens per second in the last batch.",
                "# TYPE writetune_last_batch_tokens_per_second gauge",
                f"writetune_last_batch_tokens_per_second {_number(self.last_tokens_per_second)}",
                "# HELP writetune_batch_size Sequences per engine step (or per call of a generator without the engine).",
                "# TYPE writetune_batch_size histogram",
                *self.batch_sizes.lines("writetune_batch_size"),
            ]
        lines += [
            "# HELP writetune_queue_depth Jobs waiting for the generator.",
            "# TYPE writetune_queue_depth gauge",
            f"writetune_queue_depth {self.queue_depth()}",
            "# HELP writetune_inflight_requests Generation requests in the generator now.",
            "# TYPE writetune_inflight_requests gauge",
            f"writetune_inflight_requests {self.inflight()}",
        ]
        return "\n".join(lines) + "\n"
