"""Measured peak memory of one training step, to hold the dry run's estimate against.

On a GPU the peak is torch's own counter (`torch.cuda.max_memory_allocated`, reset before the step). On CPU torch
keeps no allocator statistics, so the step runs under the profiler with memory profiling, and the peak is the
largest total of live tensor bytes on its memory timeline: every tensor the step touches (weights, gradients,
optimizer state, activations, temporaries), as the allocator sees it. Resident set size is not used: the C
allocator keeps freed pages and the Python runtime and libraries sit in it, so it moves by megabytes that no
tensor owns.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile


def step_peak_bytes(step: Callable[[], object], device) -> int:
    """Run `step()` once and return the peak bytes of live tensors on `device` during it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory(prefix="writetune-peak-") as tmp:
        path = Path(tmp) / "timeline.json"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the deprecation points to CUDA-only snapshot tools
            prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    return int(max(sum(row) for row in sizes))
