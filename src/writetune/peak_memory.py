"""Peak memory of a stretch of work in this process: the accelerator's peak allocation where a CUDA device is in use,
else the process's peak resident set (Linux `VmHWM`, which writing 5 to `/proc/self/clear_refs` resets).

`reset()` starts a stretch and `peak()` reads its peak in bytes (None where neither measure is available). The CPU
figure is the whole process's (interpreter, libraries and data as well as the model), which is what serving costs.
"""

from __future__ import annotations

from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _cuda():
    return torch.cuda if torch.cuda.is_available() and torch.cuda.is_initialized() else None


def reset() -> None:
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass


def peak() -> tuple[int | None, str]:
    """(bytes, what was measured: 'cuda_max_allocated' or 'process_peak_rss'); (None, '') where neither can be read."""
    cuda = _cuda()
    if cuda is not None:
        return int(cuda.max_memory_allocated()), "cuda_max_allocated"
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024, "process_peak_rss"
    except OSError:
        pass
    return None, ""
