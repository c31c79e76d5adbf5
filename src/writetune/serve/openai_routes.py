"""The OpenAI-compatible routes: `/v1/models`, `/v1/chat/completions` and `/v1/completions`, answered whole or
streamed as server-sent events, token by token as the scheduler delivers them.

A chat is rendered whole with the model's own prompt format (the one renderer in `writetune.prompt`, as in
training): its system messages replace the format's system prompt, and earlier user and assistant turns come before
the last user message.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from writetune.generate import Request
from writetune.serve.errors import ApiError, error_payload
from writetune.serve.scheduler import GenerationError, Job, RequestTimeout
from writetune.serve.schemas import ChatCompletionBody, ChatMessage, CompletionBody, SamplingBody
from writetune.serve.state import Served, ServerState

router = APIRouter()


@router.get("/v1/models")
async def models(server: Served):
    return {"object": "list", "data": [{"id": server.model.model_id, "object": "model",
                                        "created": int(server.started), "owned_by": "writetune"}]}


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionBody, server: Served):
    texts = [_content_text(m.content) for m in body.messages]
    server.check_input(texts)
    request = conversation(body.messages, texts)
    max_tokens = server.max_tokens(body.max_completion_tokens or body.max_tokens)
    server.check_sequences(body.n, "n")
    return await respond(server, body, [request] * body.n, max_tokens, server.model.prompt_tokens(request),
                         chat=True, echoes=[""] * body.n)


@router.post("/v1/completions")
async def completions(body: CompletionBody, server: Served):
    settings = server.settings
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts or not all(p.strip() for p in prompts):
        raise ApiError(422, "prompt must be a non-empty string or a list of them", code="empty_prompt")
    if len(prompts) > settings.max_prompts:
        raise ApiError(413, f"{len(prompts)} prompts in one request; this server accepts at most "
                            f"{settings.max_prompts}", code="too_many_prompts")
    server.check_input(prompts)
    server.check_sequences(len(prompts) * body.n, f"{len(prompts)} prompts x n {body.n}")
    max_tokens = server.max_tokens(body.max_tokens)
    requests = [Request(p) for p in prompts for _ in range(body.n)]
    prompt_tokens = sum(server.model.prompt_tokens(Request(p)) for p in prompts)
    return await respond(server, body, requests, max_tokens, prompt_tokens, chat=False,
                         echoes=[r.instruction if body.echo else "" for r in requests])


async def respond(server: ServerState, body: SamplingBody, requests: list[Request], max_tokens: int,
                  prompt_tokens: int, *, chat: bool, echoes: list[str]):
    """A chat or completion answer, whole or streamed: the one place both routes generate. `echoes` are the texts
    each choice starts with (the prompt, for a completion with `echo`)."""
    job = server.scheduler.submit(requests, server.sampling(body, max_tokens), _stops(body.stop))
    ident, created = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", int(time.time())
    head = {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
            "model": server.model.model_id}
    if body.stream:
        if chat:
            head["object"] = "chat.completion.chunk"
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(_events(server, job, head, prompt_tokens, chat=chat, echoes=echoes,
                                         include_usage=include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    answers = await server.scheduler.answers(job, server.settings.request_timeout_s)
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": a.text}, "logprobs": None,
                    "finish_reason": a.finish_reason} for i, a in enumerate(answers)]
    else:
        choices = [{"index": i, "text": echoes[i] + a.text, "logprobs": None,
                    "finish_reason": a.finish_reason} for i, a in enumerate(answers)]
    return {**head, "choices": choices, "usage": _usage(prompt_tokens, answers)}


async def _events(server: ServerState, job: Job, head: dict, prompt_tokens: int, *, chat: bool, echoes: list[str],
                  include_usage: bool):
    """The server-sent events of a streamed chat or completion answer: each choice's opening (a chat's assistant
    role, a completion's echo), its pieces as they are generated and its finish reason, then the usage when asked
    for and `[DONE]`. An error after the response has started is sent as an event."""

    def chunk(index: int, piece: str, reason: str | None = None, delta: dict | None = None) -> str:
        if chat:
            delta = delta if delta is not None else ({"content": piece} if piece else {})
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
        else:
            choice = {"index": index, "text": piece, "logprobs": None, "finish_reason": reason}
        return _sse({**head, "choices": [choice]})

    answers = [None] * len(echoes)
    for i, echo in enumerate(echoes):
        if chat:
            yield chunk(i, "", delta={"role": "assistant", "content": ""})
        elif echo:
            yield chunk(i, echo)
    try:
        async for index, piece, answer in server.scheduler.stream(job, server.settings.request_timeout_s):
            if piece:
                yield chunk(index, piece)
            if answer is not None:
                answers[index] = answer
                yield chunk(index, "", answer.finish_reason)
    except (RequestTimeout, GenerationError) as err:
        code = "timeout" if isinstance(err, RequestTimeout) else "generation_failed"
        yield _sse(error_payload(str(err), code, "server_error"))
        return
    if include_usage:
        yield _sse({**head, "choices": [], "usage": _usage(prompt_tokens, answers)})
    yield _sse("[DONE]")


def _usage(prompt_tokens: int, answers) -> dict:
    completion = sum(a.tokens for a in answers)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def _sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


def _content_text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") not in ("text", "input_text") or not isinstance(part.get("text"), str):
            raise ApiError(422, f"unsupported message content part of type {part.get('type')!r}: only text parts "
                                "are supported", code="unsupported_content")
        parts.append(part["text"])
    return "\n".join(parts)


def _stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if len(stops) > 4:
        raise ApiError(422, "at most 4 stop sequences", code="invalid_stop")
    return [s for s in stops if s]



def conversation(messages: list[ChatMessage], texts: list[str]) -> Request:
    """A chat as one request: system (and developer) messages become the system prompt, each user turn answered by
    an assistant message becomes a history turn, and the user messages after the last answer are the request."""
    system, history, pending = [], [], []
    for message, text in zip(messages, texts):
        if message.role in ("system", "developer"):
            system.append(text)
        elif message.role == "user":
            pending.append(text)
        elif message.role == "assistant":
            history.append(("\n\n".join(pending), text))
            pending = []
        else:
            raise ApiError(422, f"unsupported message role {message.role!r}: expected system, developer, user or "
                                "assistant", code="unsupported_role")
    user = "\n\n".join(pending)
    if not user.strip():
        raise ApiError(422, "messages need a non-empty user message after the last assistant message",
                       code="no_user_message")
    return Request(user, history=tuple(history), system="\n\n".join(system) if system else None)
