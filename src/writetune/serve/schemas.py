"""The request bodies the HTTP API accepts, as pydantic models: OpenAI's chat and completion requests (lenient: the
fields this server does not use are accepted and ignored) and `/v1/edit`'s."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send fields this server does not use


class ChatMessage(_Lenient):
    role: str
    content: str | list[dict[str, Any]] | None = None


class SamplingBody(_Lenient):
    """The fields chat and completion requests share: the model, the token budget, sampling, streaming, stops."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=8)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # a signed 64-bit integer, as OpenAI's API has it


class ChatCompletionBody(SamplingBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionBody(SamplingBody):
    prompt: str | list[str]
    echo: bool = False


class EditBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    task: str = "grammaticality"
    text: str
    raw_answers: bool = False  # include the model's answers that were not offered as edits
