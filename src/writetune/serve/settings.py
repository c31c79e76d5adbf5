"""Typed, validated server settings: what to serve, where, and the limits that keep the server answering."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from writetune.models import DEFAULT_ASSISTANT
from writetune.tasks import get_task


class ServeSettings(BaseModel):
    """Everything `writetune serve` can be told. Validated once, when the server starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(DEFAULT_ASSISTANT, min_length=1,
                       description="model spec (alias, directory, run, .gguf, hub id)")
    model_name: str | None = Field(None, description="the id /v1/models reports; default: derived from the spec")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    allowed_hosts: tuple[str, ...] = Field((), description="host names (Host header) answered besides IP "
                                           "addresses and localhost; '*' answers any")
    api_key: str | None = Field(None, description="when set, /v1/* needs 'Authorization: Bearer <key>'")
    dtype: str = "float32"
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, cuda, cuda:N")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: torch's own choice (the cores). "
                                "On a CPU shared with other jobs, fewer threads than cores avoids oversubscription")
    max_input_chars: int = Field(8000, ge=1, description="longest input text (all messages together): 413 beyond")
    max_new_tokens: int = Field(512, ge=1, description="largest max_tokens a request may ask for: 422 beyond")
    default_max_tokens: int = Field(256, ge=1, description="max_tokens of a chat completion that names none")
    max_batch_size: int = Field(8, ge=1, description="sequences the engine decodes together; requests join the "
                                "running batch as rows free up (1: serial serving)")
    max_prompts: int = Field(16, ge=1, description="prompts in one /v1/completions request: 413 beyond")
    max_sentences: int = Field(64, ge=1, description="sentences in one /v1/edit text: 413 beyond")
    max_queue: int = Field(256, ge=1, description="generation sequences (prompts x n, sentences) waiting for the "
                           "generator: 503 with Retry-After beyond; a single request larger than this gets 413")
    request_timeout_s: float = Field(120.0, gt=0, description="a request still unanswered after this gets 504")
    header_timeout_s: float = Field(10.0, gt=0, description="a request line and headers not complete after this "
                                    "(from the connection's opening or the request's first byte) get 408")
    body_timeout_s: float = Field(20.0, gt=0, description="a request body not complete this long after its "
                                  "headers gets 408")
    max_connections: int = Field(256, ge=1, description="open connections; one beyond gets 503 and is closed")
    errant_types: bool = Field(True, description="type grammar edits with ERRANT (spaCy model, loaded offline)")
    rewrite_check: bool = Field(True, description="offer an answer as edits only where it is a rewrite of its "
                                "sentence (writetune.serve.rewrite_check); off: every answer is offered")
    languagetool_task: str = Field("grammaticality", description="the task a LanguageTool check (/v2/check) runs: "
                                   "a writing task's name or alias, or all")

    @field_validator("languagetool_task")
    @classmethod
    def _writing_task(cls, value: str) -> str:
        name = value.strip().lower()
        if name == "all":
            return name
        task = get_task(name)  # UnknownTaskError (a ValueError) names the tasks there are
        if not task.writing:
            raise ValueError(f"task '{task.name}' is not a writing task; a LanguageTool check edits text")
        return task.name

    @field_validator("api_key")
    @classmethod
    def _non_blank_key(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("api_key is blank; leave it unset to serve without authentication")
        return value

    @field_validator("model_name")
    @classmethod
    def _non_blank_name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("model_name is blank")
        return value

    @property
    def max_body_bytes(self) -> int:
        """Request bodies larger than this are refused (413) before they are parsed: twelve bytes per allowed
        character (an escaped surrogate pair, JSON's worst case) plus room for the rest of the request."""
        return 12 * self.max_input_chars + 65_536
