"""Request text, written once for every backend: the prompt a completion model sees (`render_prompt`), the same
conversation as chat messages (`render_messages`), cutting generated tokens at the first stop token and text at the
first stop string, a finished sequence's answer text (`answer_from_tokens`), a token estimate for remote tokenizers,
and `TextStream`, which turns one sequence's tokens into text pieces as they are generated so that the pieces join to
exactly the finished answer."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

from writetune.generate.api import Request
from writetune.prompt import PromptFormat


def _turns(request: Request) -> list[tuple[str, str, str]]:
    """(instruction, input, answer) of every turn before the request: the chat history, then the few-shot turns."""
    turns = [(user, "", answer) for user, answer in request.history]
    return turns + [(request.instruction, shot_input, answer) for shot_input, answer in request.shots]


def _system_format(fmt: PromptFormat, request: Request) -> PromptFormat:
    return fmt if request.system is None else replace(fmt, system=request.system)


def render_prompt(fmt: PromptFormat, request: Request) -> str:
    """The text a completion model sees: each earlier turn as a user turn and an answer, then the request's user
    turn. The system header is rendered once, at the start, by `PromptFormat.render_prompt`."""
    fmt = _system_format(fmt, request)
    bare = replace(fmt, system="")  # later turns without the system header
    text = ""
    for k, (instruction, input_text, answer) in enumerate(_turns(request)):
        text += (fmt if k == 0 else bare).render_prompt(instruction, input_text)
        text += fmt.render_response(answer)
    return text + (bare if text else fmt).render_prompt(request.instruction, request.input)


def render_messages(fmt: PromptFormat, request: Request) -> list[dict[str, str]]:
    """The same conversation as chat messages (system, then user/assistant turns) for chat-completion APIs."""
    fmt = _system_format(fmt, request)
    messages = [{"role": "system", "content": fmt.system}] if fmt.system else []
    for instruction, input_text, answer in _turns(request):
        messages.append({"role": "user", "content": fmt.message(instruction, input_text)})
        messages.append({"role": "assistant", "content": answer.strip()})
    messages.append({"role": "user", "content": fmt.message(request.instruction, request.input)})
    return messages


def cut_at_stop_token(ids: Sequence[int], stop_ids: Iterable[int]) -> list[int]:
    """The tokens before the first stop token."""
    stop = set(stop_ids)
    for pos, token in enumerate(ids):
        if token in stop:
            return list(ids[:pos])
    return list(ids)


def answer_from_tokens(tokenizer, fmt: PromptFormat, stop_ids: Iterable[int], ids: Sequence[int]) -> tuple[str, int]:
    """A finished sequence's answer: its generated tokens cut at the first stop token, decoded without special
    tokens and stripped as the prompt format says; with the number of answer tokens kept."""
    kept = cut_at_stop_token(ids, stop_ids)
    return fmt.strip_response(tokenizer.decode(kept, skip_special_tokens=True)), len(kept)


def cut_at_stop_string(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the first of `stops` it contains, and whether one was found."""
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def estimate_tokens(text: str) -> int:
    """Token count of English text without a tokenizer: about four characters per token, never fewer tokens than
    words. Used for the budgets of backends whose tokenizer is remote."""
    return max(len(text.split()), math.ceil(len(text) / 4))


class TextStream:
    """One sequence's answer as it is generated. `push(token)` takes the next token and returns the text that can be
    shown now (possibly empty); `done` turns True at a stop token, at the format's end-of-turn or stop strings, or at
    one of the request's own `stops`. The pieces returned by `push` and then `finish()` join to `text`, the answer as
    `PromptFormat.strip_response` and the request's stops make it.

    Text that could still change is held back: trailing whitespace (stripped at the end), an incomplete UTF-8
    character, and an ending that could be the start of a stop string."""

    def __init__(self, tokenizer, fmt: PromptFormat, stop_ids: Iterable[int], stops: Sequence[str] = ()):
        self.tokenizer, self.fmt = tokenizer, fmt
        self.stop_ids = set(stop_ids)
        self.markers = [m for m in (fmt.end_of_turn, *fmt.stop_strings) if m]
        self.stops = [s for s in stops if s]
        self.ids: list[int] = []
        self.emitted = ""
        self.done = False
        self.stopped = False  # finished by a stop token or string rather than by the budget
        self.text = ""

    @property
    def tokens(self) -> int:
        """Answer tokens generated (the stop token excluded)."""
        return len(self.ids)

    def _answer(self) -> tuple[str, bool]:
        """The answer so far, and whether a stop string ends it."""
        decoded = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        stripped = self.fmt.strip_response(decoded)
        by_marker = any(m in decoded for m in self.markers)
        text, by_stop = cut_at_stop_string(stripped, self.stops)
        return text, by_marker or by_stop

    def push(self, token: int) -> str:
        if self.done:
            return ""
        if token in self.stop_ids:
            self.done = self.stopped = True
            return self.finish()
        self.ids.append(token)
        text, stopped = self._answer()
        if stopped:
            self.done = self.stopped = True
            return self.finish()
        decoded = self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()
        keep = len(decoded.rstrip())
        while keep and decoded[keep - 1] == "\ufffd":
            keep -= 1
        for marker in (*self.markers, *self.stops):
            for n in range(min(len(marker) - 1, keep), 0, -1):
                if decoded[:keep].endswith(marker[:n]):
                    keep -= n
                    break
        safe = decoded[:keep]
        if not safe.startswith(self.emitted):
            return ""
        piece, self.emitted = safe[len(self.emitted):], safe
        return piece

    def finish(self) -> str:
        """The rest of the answer (called once the sequence has ended); sets `text`."""
        self.done = True
        self.text, _ = self._answer()
        piece = self.text[len(self.emitted):] if self.text.startswith(self.emitted) else ""
        self.emitted = self.text
        return piece
