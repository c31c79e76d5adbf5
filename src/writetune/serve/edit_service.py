"""The edit service: `/v1/edit` (a text's sentences through one writing task, or `all` of them in turn, returned as
the edited text plus character-offset edits that reproduce it) and `/v1/tasks`, the tasks it runs. LanguageTool's
`/v2/check` and `writetune edit` run their checks through `suggest_edits` too."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from fastapi import APIRouter

from writetune.generate import DecodingConfig, Request
from writetune.serve.edits import ErrantTyper, apply_edits, split_sentences, text_edits
from writetune.serve.errors import ApiError
from writetune.serve.rewrite_check import check_rewrite
from writetune.serve.scheduler import GenerationError, RequestTimeout
from writetune.serve.schemas import EditBody
from writetune.serve.state import Served, ServerState
from writetune.tasks import Task, UnknownTaskError, get_task, writing_tasks

ALL_TASKS = ("grammaticality", "clarity")  # what task "all" runs, in order

router = APIRouter()


@router.get("/v1/tasks")
async def tasks():
    listed = [{"name": t.name, "aliases": list(t.aliases), "description": t.description,
               "instruction": t.instruction} for t in writing_tasks()]
    listed.append({"name": "all", "aliases": [], "description": f"{' then '.join(ALL_TASKS)}",
                   "instruction": None})
    return {"object": "list", "data": listed}


@router.post("/v1/edit")
async def edit(body: EditBody, server: Served):
    return await suggest_edits(server, body)


async def suggest_edits(server: ServerState, body: EditBody) -> dict:
    """`/v1/edit`'s answer to `body`: the edited text, its edits (typed with ERRANT where grammar ran), the
    sentences where no answer was confident enough to offer, and with `all` each stage's outputs."""
    settings = server.settings
    server.check_input([body.text])
    if not body.text.strip():
        raise ApiError(422, "text is empty", code="empty_text")
    name = body.task.strip().lower()
    chosen = _chosen_tasks(name)
    spans = split_sentences(body.text)
    if len(spans) > settings.max_sentences:
        raise ApiError(413, f"the text has {len(spans)} sentences; this server edits at most "
                            f"{settings.max_sentences} per request", code="too_many_sentences")
    server.check_sequences(len(spans), f"{len(spans)} sentences")
    sources = [body.text[s:e] for s, e in spans]
    stages, unconfident = await _run_stages(server, chosen, sources, body.raw_answers)
    output, pos = [], 0
    for (s, e), answer in zip(spans, stages[-1][1]):
        output.extend((body.text[pos:s], answer))
        pos = e
    output = "".join(output) + body.text[pos:]
    typed = any(t.name == "grammaticality" for t in chosen) and server.typer.enabled
    edits = await asyncio.to_thread(_typed_edits, server.typer, spans, sources, stages, typed)
    if apply_edits(body.text, edits) != output:  # the invariant the page relies on; a bug if it ever fails
        raise GenerationError("internal error: the edits do not reproduce the output")
    return {"object": "edit", "model": server.model.model_id, "task": "all" if name == "all" else chosen[0].name,
            "output": output, "edits": [e.to_dict() for e in edits],
            "edit_types": "errant" if typed and server.typer.available else "word",
            "sentences": len(spans),
            "no_confident_suggestion": unconfident,
            "stages": [{"task": t, "outputs": list(outs)} for t, outs in stages] if len(stages) > 1 else None}


def _chosen_tasks(name: str) -> list[Task]:
    """The writing tasks a request's task name runs, in order: one, or `ALL_TASKS` for `all`."""
    try:
        chosen = [get_task(t) for t in ALL_TASKS] if name == "all" else [get_task(name)]
    except UnknownTaskError as err:
        raise ApiError(422, f"{err}; or 'all' ({' then '.join(ALL_TASKS)})", code="unknown_task") from None
    if not all(t.writing for t in chosen):
        raise ApiError(422, f"task '{chosen[0].name}' is not a writing task; /v1/edit edits text",
                       code="not_a_writing_task")
    return chosen


async def _run_stages(server: ServerState, chosen: list[Task], sources: list[str],
                      raw_answers: bool) -> tuple[list[tuple[str, list[str]]], list[dict]]:
    """Each task's outputs for the sentences, every task editing the previous one's outputs, all within the
    request's timeout; and the sentences whose answer was not a confident rewrite (those stay as they were)."""
    settings = server.settings
    decoding = DecodingConfig(strategy="greedy", max_new_tokens=settings.max_new_tokens)
    deadline = time.monotonic() + settings.request_timeout_s
    stages, current, unconfident = [], sources, []
    for task in chosen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTimeout(f"no answer within {settings.request_timeout_s:g} s")
        answers = await server.generate([Request(task.instruction, s) for s in current], decoding, remaining)
        kept = []
        for k, (given, answer) in enumerate(zip(current, answers)):
            verdict = check_rewrite(task.name, given, answer) if settings.rewrite_check else None
            # chat is never offered as edits: the sentence stays as it was
            if verdict is not None and not verdict.confident:
                server.metrics.observe_unconfident(task.name)
                unconfident.append({"sentence": k, "task": task.name, "reason": verdict.reason,
                                    **({"answer": answer} if raw_answers else {})})
            kept.append(given if verdict is not None and not verdict.confident else answer)
        current = kept
        stages.append((task.name, current))
    return stages, unconfident


def _typed_edits(typer: ErrantTyper, spans, sources, stages, typed: bool) -> list:
    """Word-level edits from each source sentence to its final output. With grammar among the stages, edits get
    ERRANT types; after several stages, an edit that is exactly a grammar-stage edit gets that edit's ERRANT type
    and the others keep their word-level type (insert, delete, replace, whitespace)."""
    final = stages[-1][1]
    grammar = dict(stages).get("grammaticality")
    result = []
    for k, ((start, _end), source, target) in enumerate(zip(spans, sources, final)):
        found = text_edits(source, target, offset=start)
        if not typed or not found:
            result.extend(found)
        elif len(stages) == 1:
            result.extend(typer.type_edits(source, target, found, offset=start))
        else:
            g_edits = typer.type_edits(source, grammar[k], text_edits(source, grammar[k], offset=start), offset=start)
            by_key = {(e.start, e.end, e.replacement): e.type for e in g_edits}
            result.extend(replace(e, type=by_key.get((e.start, e.end, e.replacement), e.type)) for e in found)
    return result
