"""Editing whole documents from the shell: the prose of a (Markdown) document goes through the same edit service
as `/v1/edit`, in-process, and the result is the edited text, a unified diff, or `/v1/edit`'s JSON shape.

`DocumentEditor` runs the server's app without a socket: its lifespan starts the scheduler, and each prose segment
(see `writetune.markdown`) is one edit request, several in flight at a time so that their sentences share engine
batches. Edits that would touch a protected range (inline code, a URL, the layout of a wrapped line) are dropped, so
everything outside prose stays byte-identical. `write_in_place` replaces a file atomically after keeping a backup.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from writetune.atomic import write_text_atomic
from writetune.markdown import Segment, prose_segments
from writetune.serve.app import create_app
from writetune.serve.edit_service import suggest_edits
from writetune.serve.edits import apply_edits
from writetune.serve.schemas import EditBody
from writetune.serve.settings import ServeSettings

Progress = Callable[[int, int], None]  # (segments done, segments in all)


def _touches(edit: dict, ranges: tuple[tuple[int, int], ...]) -> bool:
    """Whether an edit changes anything inside one of `ranges` (an insertion at a range's edge does not)."""
    s, e = edit["start"], edit["end"]
    return any((s < b and a < e) if s < e else a < s < b for a, b in ranges)


class DocumentEditor:
    """Edits documents with one loaded `ServedModel`; use as `with DocumentEditor(model, ...) as editor:`."""

    def __init__(self, model, *, task: str = "grammaticality", max_new_tokens: int = 256, max_batch_size: int = 8,
                 concurrency: int = 8, errant_types: bool = True, rewrite_check: bool = True):
        self.task, self.concurrency = task, concurrency
        # One edit request per segment, however long; nothing here is waiting on a client, so no timeout either.
        settings = ServeSettings(model=model.model_id, max_new_tokens=max_new_tokens, max_batch_size=max_batch_size,
                                 max_input_chars=10**9, max_queue=10**6, request_timeout_s=10**9,
                                 errant_types=errant_types, rewrite_check=rewrite_check)
        self.app = create_app(model, settings)
        self.model_id = model.model_id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lifespan = None

    def __enter__(self) -> "DocumentEditor":
        self._loop = asyncio.new_event_loop()
        self._lifespan = self.app.router.lifespan_context(self.app)
        self._loop.run_until_complete(self._lifespan.__aenter__())
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        finally:
            self._loop.close()

    def edit(self, text: str, *, markdown: bool = True, on_progress: Progress | None = None) -> dict:
        """`text` edited, in `/v1/edit`'s shape (`output`, `edits` with offsets into `text`, ...); with `markdown`,
        only its prose is edited."""
        if not text.strip():
            raise ValueError("the text to edit is empty")
        segments = prose_segments(text) if markdown else [Segment(0, len(text))]
        return self._loop.run_until_complete(self._edit(text, segments, on_progress))

    async def _edit(self, text: str, segments: list[Segment], on_progress: Progress | None) -> dict:
        gate, done = asyncio.Semaphore(self.concurrency), 0
        if on_progress:
            on_progress(0, len(segments))

        async def one(segment: Segment) -> dict:
            nonlocal done
            body = EditBody(task=self.task, text=segment.model_text(text))
            async with gate:
                answer = await suggest_edits(self.app.state.server, body)
            done += 1
            if on_progress:
                on_progress(done, len(segments))
            return answer

        answers = await asyncio.gather(*(one(s) for s in segments))
        edits, stages = [], {}
        for segment, answer in zip(segments, answers):
            for edit in answer["edits"]:
                moved = {**edit, "start": edit["start"] + segment.start, "end": edit["end"] + segment.start}
                if not _touches(moved, segment.protected):
                    edits.append({**moved, "original": text[moved["start"]:moved["end"]]})
            for stage in answer["stages"] or []:
                stages.setdefault(stage["task"], []).extend(stage["outputs"])
        first = answers[0] if answers else {"task": self.task, "edit_types": "word"}
        return {"object": "edit", "model": self.model_id, "task": first["task"], "output": apply_edits(text, edits),
                "edits": edits, "edit_types": first["edit_types"],
                "sentences": sum(a["sentences"] for a in answers),
                "stages": [{"task": t, "outputs": o} for t, o in stages.items()] if stages else None}


def _diff_lines(text: str) -> list[str]:
    """Lines as diff reads them: split after each \\n only."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def unified_diff(before: str, after: str, path: str, mtime: float | None = None) -> str:
    """The change from `before` to `after` as `diff -u` prints it (empty when they are equal), both sides labelled
    `path`; a last line without a line break is marked as diff marks it."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S.000000000 %z", time.localtime(mtime if mtime is not None else time.time()))
    now = time.strftime("%Y-%m-%d %H:%M:%S.000000000 %z")
    lines = difflib.unified_diff(_diff_lines(before), _diff_lines(after),
                                 fromfile=path, tofile=path, fromfiledate=stamp, tofiledate=now)
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def write_in_place(path: str | os.PathLike, text: str, backup_suffix: str = ".bak") -> Path:
    """Replace the file at `path` by `text` atomically, keeping its permissions, after copying it to
    `path + backup_suffix`; returns the backup's path."""
    path = Path(path)
    if not backup_suffix:
        raise ValueError("the backup suffix is empty; an in-place edit always keeps a backup")
    backup = path.with_name(path.name + backup_suffix)
    shutil.copy2(path, backup)
    write_text_atomic(path, text, mode=path.stat().st_mode & 0o7777)
    return backup
